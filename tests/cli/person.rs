//! The person in the loop, on a real terminal (a pty): the controller's conversation, returning
//! to it mid-run, and what happens with no terminal. The fake agent stands in for Claude Code
//! (`tests/fake_agent`), reached as a user's CLI is: `MACHINE_CLAUDE_BIN`.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{wait_until, TestEnv};
use crate::pty::OnPty;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");
const PATIENCE: Duration = Duration::from_secs(20);

/// A repository whose `claude` is the fake agent, logging its starts.
struct Lab {
    env: TestEnv,
    bin: PathBuf,
    log: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let env = TestEnv::new();
        let dir = env.tmp.path().join("agents");
        std::fs::create_dir_all(&dir).expect("agents dir");
        let bin = dir.join("claude");
        std::os::unix::fs::symlink(FAKE, &bin).expect("link the fake claude");
        let log = env.tmp.path().join("agent-log.jsonl");
        Lab { env, bin, log }
    }

    fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("MACHINE_CLAUDE_BIN".into(), self.bin.display().to_string()),
            ("FAKE_AGENT_LOG".into(), self.log.display().to_string()),
        ]
    }

    fn pty(&self, args: &[&str]) -> OnPty {
        OnPty::spawn_with(&self.env, args, 120, &self.vars())
    }

    fn machine(&self, code: i32, args: &[&str]) -> crate::common::Run {
        let mut cmd = self.env.machine_cmd(args);
        cmd.envs(self.vars());
        let r = crate::common::Run::from(cmd.output().expect("spawn git-machine"));
        assert_eq!(r.code, code, "git machine {args:?}\n{r}");
        r
    }

    /// The session each start of the fake agent used, in order.
    fn sessions(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a log line");
                v["session"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    fn file_at(&self, rev: &str, path: &str) -> String {
        self.env.git(&["show", &format!("{rev}:{path}")])
    }
}

/// A controller that writes what it is told; a step that keeps the prompt it got (the
/// controller's conversation comes with it as context) and needs the spec.
const TALK: &str = r#"version = 1
name = "talk"

[controller]
engine = "claude"
permissions = "edit"
prompt = "You are the product owner: ask what to build."

[[steps]]
id = "build"
run = ["sh", "-c", "test -f spec.md && cat > got-prompt.txt"]
prompt = "Build it."
context = [{ from = "controller" }]
"#;

#[track_caller]
fn shows(view: &OnPty, text: &str) {
    assert!(
        wait_until(PATIENCE, || view.text().contains(text)),
        "never showed {text:?}\n{}",
        view.text()
    );
}

/// How often `text` is on the screen.
fn count(view: &OnPty, text: &str) -> usize {
    view.text().matches(text).count()
}

#[test]
fn the_controller_conversation_starts_the_workflow_and_is_its_first_commit() {
    let lab = Lab::new();
    lab.env.workflow("talk", TALK);
    let mut view = lab.pty(&["run", "talk"]);
    shows(&view, "You said: You are the product owner");
    shows(&view, "you ›");
    view.line("FAKE_WRITE spec.md a todo app");
    shows(&view, "You said: FAKE_WRITE spec.md a todo app");
    // An empty line asks; "n" goes back to the conversation.
    view.line("");
    shows(&view, "Start the workflow? [Y/n]");
    view.line("n");
    assert!(
        wait_until(PATIENCE, || count(&view, "you ›") >= 3),
        "{}",
        view.text()
    );
    view.line("");
    assert!(
        wait_until(PATIENCE, || count(&view, "Start the workflow?") >= 2),
        "{}",
        view.text()
    );
    view.line("");
    assert_eq!(view.wait(PATIENCE), Some(0), "{}", view.text());

    let run = lab.env.last_run();
    let subjects = lab.env.subjects(&run);
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert_eq!(subjects[1], "controller: conversation of 1 turn");
    assert!(subjects[2].starts_with("build: "), "{subjects:?}");
    let controller = format!("machine/{run}~1");
    assert_eq!(lab.file_at(&controller, "spec.md").trim(), "a todo app");
    let session = lab.env.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Machine-Session,valueonly)",
        &controller,
    ]);
    let session = session.trim();
    assert!(
        !session.is_empty(),
        "the controller's commit names its session"
    );
    // Every turn was one session: the first started it, the second continued it.
    let sessions = lab.sessions();
    assert_eq!(
        sessions,
        [session, session],
        "one session for the whole conversation"
    );
    let record = format!(".codemachine/runs/{run}/steps/01-controller");
    let turns = lab.file_at(&controller, &format!("{record}/conversation.jsonl"));
    let turns: Vec<serde_json::Value> = turns
        .lines()
        .map(|l| serde_json::from_str(l).expect("a turn"))
        .collect();
    let who: Vec<&str> = turns
        .iter()
        .map(|t| t["who"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(who, ["agent", "Test User", "agent"]);
    // The record counts what every turn spent.
    let step: toml::Value =
        toml::from_str(&lab.file_at(&controller, &format!("{record}/step.toml")))
            .expect("a record");
    // One model turn for the opening, two for the write (its tool call, then the answer).
    assert_eq!(step["usage"]["turns"].as_integer(), Some(3), "{step}");
    assert_eq!(turns[1]["text"], "FAKE_WRITE spec.md a todo app");
    // `from = "controller"` gives the next step the conversation.
    let got = lab.file_at(&format!("machine/{run}"), "got-prompt.txt");
    assert!(got.contains("Build it."), "{got}");
    assert!(got.contains("FAKE_WRITE spec.md a todo app"), "{got}");
}

#[test]
fn a_conversation_cut_off_by_a_crash_resumes_in_the_same_session() {
    let lab = Lab::new();
    lab.env.workflow("talk", TALK);
    let mut view = lab.pty(&["run", "talk"]);
    shows(&view, "you ›");
    view.line("FAKE_WRITE spec.md first words");
    shows(&view, "You said: FAKE_WRITE spec.md first words");
    assert!(wait_until(PATIENCE, || count(&view, "you ›") >= 2));
    // SAFETY: kill only sends a signal, to the child this test started.
    unsafe {
        libc::kill(view.pid() as i32, libc::SIGKILL);
    }
    view.wait(PATIENCE);
    let run = lab.env.last_run();
    let first = lab.sessions()[0].clone();

    let mut again = lab.pty(&["resume", &run]);
    shows(&again, "reopened: 3 turns so far");
    shows(&again, "Test User › FAKE_WRITE spec.md first words");
    shows(&again, "you ›");
    again.line("and a second thought");
    shows(&again, "You said: and a second thought");
    again.line("");
    shows(&again, "Start the workflow?");
    again.line("y");
    assert_eq!(again.wait(PATIENCE), Some(0), "{}", again.text());
    let sessions = lab.sessions();
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    assert!(sessions.iter().all(|s| *s == first), "{sessions:?}");
    let record = format!(".codemachine/runs/{run}/steps/01-controller/conversation.jsonl");
    let turns = lab.file_at(&format!("machine/{run}~1"), &record);
    assert_eq!(turns.lines().count(), 5, "{turns}");
    assert_eq!(
        lab.file_at(&format!("machine/{run}"), "spec.md").trim(),
        "first words"
    );
}

#[test]
fn without_a_terminal_the_controller_waits_or_runs_headless_as_the_workflow_says() {
    let lab = Lab::new();
    lab.env.workflow("talk", TALK);
    let r = lab.machine(1, &["run", "talk", "--no-input"]);
    assert!(r.stderr.contains("waits for you at a terminal"), "{r}");
    assert!(r.stderr.contains("step `controller` waits for you"), "{r}");
    let run = lab.env.last_run();
    assert_eq!(
        lab.env.subjects(&run)[1],
        "wait: `controller` needs a person at a terminal"
    );
    let status = lab.machine(0, &["status", &run]);
    assert!(status.stdout.contains("paused"), "{status}");
    assert!(lab.sessions().is_empty(), "no agent started");
    // On a terminal, the same run opens the conversation.
    let mut view = lab.pty(&["resume", &run]);
    shows(&view, "you ›");
    view.line("FAKE_WRITE spec.md later");
    shows(&view, "You said: FAKE_WRITE spec.md later");
    view.line("");
    view.line("");
    assert_eq!(view.wait(PATIENCE), Some(0), "{}", view.text());

    let headless = TALK
        .replace(
            "permissions = \"edit\"",
            "permissions = \"edit\"\ninteractive_fallback = \"headless\"",
        )
        .replace(
            "ask what to build.",
            "ask what to build.\\nFAKE_WRITE spec.md decided alone",
        );
    lab.env.workflow(
        "alone",
        &headless.replace("name = \"talk\"", "name = \"alone\""),
    );
    lab.machine(0, &["run", "alone", "--no-input"]);
    let run = lab.env.last_run();
    let subjects = lab.env.subjects(&run);
    assert!(subjects[1].starts_with("controller: "), "{subjects:?}");
    assert_eq!(
        lab.file_at(&format!("machine/{run}"), "spec.md").trim(),
        "decided alone"
    );
}

#[test]
fn returning_to_the_controller_mid_run_continues_its_session_and_resumes_the_run() {
    let lab = Lab::new();
    let wf = TALK
        .replace(
            "permissions = \"edit\"",
            "permissions = \"edit\"\ninteractive_fallback = \"headless\"",
        )
        .replace(
            "ask what to build.",
            "ask what to build.\\nFAKE_WRITE spec.md v1",
        )
        .replace("test -f spec.md", "test -f go");
    lab.env.workflow("talk", &wf);
    // Without a terminal the controller runs alone; the step after it fails (no `go`).
    lab.machine(1, &["run", "talk", "--no-input"]);
    let run = lab.env.last_run();
    let first = lab.sessions()[0].clone();

    let mut view = lab.pty(&["controller", &run]);
    shows(&view, "you ›");
    view.line("FAKE_WRITE go now");
    shows(&view, "You said: FAKE_WRITE go now");
    view.line("");
    shows(&view, "Resume the run? [Y/n]");
    view.line("");
    assert_eq!(view.wait(PATIENCE), Some(0), "{}", view.text());
    let subjects = lab.env.subjects(&run);
    let names: Vec<&str> = subjects
        .iter()
        .map(|s| s.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["start", "controller", "build", "controller", "build"],
        "{subjects:?}"
    );
    assert_eq!(subjects[3], "controller: conversation of 1 turn");
    assert_eq!(
        lab.sessions(),
        [first.clone(), first],
        "the same session, continued"
    );
    let tip = format!("machine/{run}");
    assert_eq!(lab.file_at(&tip, "go").trim(), "now");
    let record = format!(".codemachine/runs/{run}/steps/03-controller/conversation.jsonl");
    assert!(lab.file_at(&tip, &record).contains("FAKE_WRITE go now"));
}

#[test]
fn the_controller_refuses_a_run_without_one_and_a_missing_terminal() {
    let lab = Lab::new();
    lab.env.workflow(
        "plain",
        "version = 1\nname = \"plain\"\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n",
    );
    lab.machine(0, &["run", "plain"]);
    let run = lab.env.last_run();
    let r = lab.machine(2, &["controller", &run]);
    assert!(r.stderr.contains("has no [controller]"), "{r}");
    lab.env.workflow("talk", TALK);
    lab.machine(1, &["run", "talk", "--no-input"]);
    let run = lab.env.last_run();
    let r = lab.machine(2, &["controller", &run]);
    assert!(r.stderr.contains("needs a terminal"), "{r}");
}

/// Each start of the fake agent as logged: (prompt, session, resumed).
fn starts(lab: &Lab) -> Vec<(String, String, bool)> {
    std::fs::read_to_string(&lab.log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a log line");
            (
                v["prompt"].as_str().unwrap_or_default().to_string(),
                v["session"].as_str().unwrap_or_default().to_string(),
                v["resumed"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

const HANGS: &str = r#"version = 1
name = "hangs"

[[steps]]
id = "work"
engine = "claude"
permissions = "edit"
prompt = "Work on it.\nFAKE_HANG"
"#;

#[test]
fn say_and_m_reach_the_running_step_which_goes_on_in_its_session() {
    let lab = Lab::new();
    lab.env.workflow("hangs", HANGS);
    let r = lab.machine(2, &["say", "nope", "hello"]);
    assert!(r.stderr.contains("nope"), "{r}");

    // `git machine say` from another terminal.
    let mut cmd = lab.env.machine_cmd(&["run", "hangs", "--plain"]);
    cmd.envs(lab.vars());
    let mut running = cmd.spawn().expect("start the run");
    assert!(
        wait_until(PATIENCE, || starts(&lab).len() == 1),
        "the agent never started"
    );
    let run = lab.env.last_run();
    let said = lab.machine(0, &["say", &run, "use", "sqlite"]);
    assert!(
        said.stdout.contains("said to run") && said.stdout.contains("use sqlite"),
        "{said}"
    );
    let status = running.wait().expect("the run ends");
    assert_eq!(status.code(), Some(0));
    let s = starts(&lab);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s[1].2, "the second start continues the session");
    assert_eq!(s[1].1, s[0].1, "in the same session");
    assert!(
        s[1].0.contains("Message from Test User: use sqlite"),
        "{}",
        s[1].0
    );
    assert_eq!(lab.env.subjects(&run).len(), 2, "one commit for the step");
    let record = lab.file_at(
        &format!("machine/{run}"),
        &format!(".codemachine/runs/{run}/steps/01-work/step.toml"),
    );
    let record: toml::Value = toml::from_str(&record).expect("a record");
    let messages = record["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["by"].as_str(), Some("Test User"));
    assert_eq!(messages[0]["text"].as_str(), Some("use sqlite"));
    let log = lab.machine(0, &["log", &run]);
    assert!(log.stdout.contains("Test User said at"), "{log}");
    assert!(log.stdout.contains(": use sqlite"), "{log}");
    let r = lab.machine(2, &["say", &run, "too late"]);
    assert!(r.stderr.contains("is not running"), "{r}");

    // `m` in the live view.
    let mut view = lab.pty(&["run", "hangs"]);
    assert!(
        wait_until(PATIENCE, || starts(&lab).len() == 3),
        "the agent never started"
    );
    shows(&view, "▶ work");
    view.key(b'm');
    shows(&view, "message ›");
    for b in "add tests".bytes() {
        view.key(b);
    }
    view.key(b'\r');
    assert_eq!(view.wait(PATIENCE), Some(0), "{}", view.text());
    let s = starts(&lab);
    assert_eq!(s.len(), 4, "{s:?}");
    assert_eq!(s[3].1, s[2].1);
    assert!(
        s[3].0.contains("Message from Test User: add tests"),
        "{}",
        s[3].0
    );
}

#[test]
fn a_session_in_use_by_another_process_is_not_continued() {
    let lab = Lab::new();
    lab.env.workflow(
        "two",
        "version = 1\nname = \"two\"\n[[steps]]\nid = \"a\"\nengine = \"claude\"\nprompt = \"first\"\ncheckpoint = true\n[[steps]]\nid = \"b\"\nengine = \"claude\"\nprompt = \"second\"\nsession = \"a\"\n",
    );
    lab.machine(1, &["run", "two"]);
    let run = lab.env.last_run();
    let session = starts(&lab)[0].1.clone();
    // Another live process (this test) holds the session.
    let locks = lab.env.repo.join(".git/machine/locks/sessions");
    std::fs::create_dir_all(&locks).expect("locks dir");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    let lock = locks.join(format!("claude-{session}"));
    std::fs::write(
        &lock,
        format!(
            "pid = {}\nhost = \"{}\"\nsince = \"2026-01-01T00:00:00Z\"\n",
            std::process::id(),
            host.trim()
        ),
    )
    .expect("write the lock");
    let r = lab.machine(3, &["resume", &run]);
    assert!(
        r.stderr.contains(&format!(
            "the claude session {session} is in use by pid {}",
            std::process::id()
        )),
        "{r}"
    );
    assert_eq!(starts(&lab).len(), 1, "no second process in the session");
    std::fs::remove_file(&lock).expect("release");
    lab.machine(0, &["resume", &run]);
    let s = starts(&lab);
    assert_eq!(
        (s.len(), s[1].1.as_str(), s[1].2),
        (2, session.as_str(), true)
    );
}

// ---- interactive steps ------------------------------------------------------------------------

const INTERACTIVE: &str = r#"version = 1
name = "inter"

[[steps]]
id = "talk"
engine = "claude"
permissions = "edit"
mode = "interactive"
prompt = "Let us talk.{leave}"

[[steps]]
id = "after"
run = ["sh", "-c", "sleep 30"]
"#;

/// The bytes on the screen after the first `marker`.
fn after<'a>(screen: &'a str, marker: &str) -> &'a str {
    screen.find(marker).map_or("", |i| &screen[i..])
}

#[test]
fn an_interactive_agent_step_gets_the_terminal_and_gives_it_back_intact() {
    let lab = Lab::new();
    lab.env.workflow(
        "inter",
        &INTERACTIVE.replace("{leave}", "\\nFAKE_LEAVE_MODES"),
    );
    let mut view = lab.pty(&["run", "inter"]);
    shows(&view, "fake claude interactive session ");
    shows(&view, "fake: ");
    view.line("FAKE_WRITE notes.md hello from me");
    assert!(
        wait_until(PATIENCE, || view.text().matches("fake: ").count() >= 2),
        "{}",
        view.text()
    );
    view.line("/exit");
    // The view is back: the next step runs, and its keys work without Enter (key mode again).
    shows(&view, "▶ after");
    let screen = view.screen();
    let handed = after(&screen, "fake claude interactive session");
    assert!(
        handed.contains("\x1b[?1049h"),
        "the agent switched the alternate screen on"
    );
    let back = after(handed, "/exit");
    for mode in [
        "\x1b[?1049l",
        "\x1b[?2004l",
        "\x1b[?1000l",
        "\x1b[<99u",
        "\x1b[?25h",
    ] {
        assert!(
            back.contains(mode),
            "{mode:?} not switched off after the agent"
        );
    }
    view.key(b'q');
    assert_eq!(view.wait(PATIENCE), Some(130), "{}", view.text());

    let run = lab.env.last_run();
    let talk = format!("machine/{run}~0");
    let subjects = lab.env.subjects(&run);
    assert!(subjects[1].starts_with("talk: interactive"), "{subjects:?}");
    assert_eq!(
        lab.file_at(&talk, "notes.md").trim(),
        "hello from me",
        "the person's work with the agent is the step's commit"
    );
    let banner = view.text();
    let session = after(&banner, "interactive session ")
        .trim_start_matches("interactive session ")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let trailer = lab.env.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Machine-Session,valueonly)",
        &talk,
    ]);
    assert_eq!(
        trailer.trim(),
        session,
        "the session the agent had, confirmed"
    );
}

#[test]
fn an_interactive_command_step_commits_the_persons_work() {
    let lab = Lab::new();
    lab.env.workflow(
        "manual",
        "version = 1\nname = \"manual\"\n[[steps]]\nid = \"by-hand\"\nrun = [\"sh\", \"-i\"]\nmode = \"interactive\"\n",
    );
    let mut view = lab.pty(&["run", "manual"]);
    shows(&view, "the terminal is yours");
    view.line("echo done by hand > manual.txt");
    view.line("exit");
    assert_eq!(view.wait(PATIENCE), Some(0), "{}", view.text());
    let run = lab.env.last_run();
    assert_eq!(
        lab.file_at(&format!("machine/{run}"), "manual.txt").trim(),
        "done by hand"
    );

    // A shell that exits non-zero fails the step: the person said it is not done.
    let mut view = lab.pty(&["run", "manual"]);
    shows(&view, "the terminal is yours");
    view.line("exit 3");
    assert_eq!(view.wait(PATIENCE), Some(1), "{}", view.text());
    shows(&view, "exit code 3");
}

#[test]
fn an_interactive_step_without_a_terminal_pauses_or_runs_headless() {
    let lab = Lab::new();
    lab.env
        .workflow("inter", &INTERACTIVE.replace("{leave}", ""));
    let r = lab.machine(1, &["run", "inter", "--no-input"]);
    assert!(
        r.stderr
            .contains("step `talk` waits for you: it is interactive"),
        "{r}"
    );
    let run = lab.env.last_run();
    assert_eq!(
        lab.env.subjects(&run)[1],
        "wait: `talk` needs a person at a terminal"
    );
    assert!(starts(&lab).is_empty(), "no agent started");

    let headless = INTERACTIVE
        .replace("{leave}", "\\nFAKE_WRITE alone.txt alone")
        .replace(
            "mode = \"interactive\"",
            "mode = \"interactive\"\ninteractive_fallback = \"headless\"",
        )
        .replace("sleep 30", "true");
    lab.env.workflow("inter", &headless);
    lab.machine(0, &["run", "inter", "--no-input"]);
    let run = lab.env.last_run();
    assert_eq!(
        lab.file_at(&format!("machine/{run}"), "alone.txt").trim(),
        "alone"
    );
    assert!(!starts(&lab)[0].2, "a headless start");
}

#[test]
fn c_in_the_live_view_goes_back_to_the_controller_and_then_on() {
    let lab = Lab::new();
    lab.env.workflow(
        "talk",
        &TALK.replace(
            "[[steps]]\nid = \"build\"",
            "[[steps]]\nid = \"work\"\nengine = \"claude\"\nprompt = \"Work.\\nFAKE_SLEEP 3\"\n\n[[steps]]\nid = \"build\"",
        ),
    );
    let mut view = lab.pty(&["run", "talk"]);
    shows(&view, "you ›");
    view.line("FAKE_WRITE spec.md v1");
    shows(&view, "You said: FAKE_WRITE spec.md v1");
    view.line("");
    shows(&view, "Start the workflow?");
    view.line("");
    shows(&view, "▶ work");
    assert!(
        wait_until(PATIENCE, || starts(&lab).len() == 3),
        "{:?}",
        starts(&lab)
    );
    // `c` twice: at once, the step's session kept.
    view.key(b'c');
    shows(&view, "c again: now");
    view.key(b'c');
    assert!(
        wait_until(PATIENCE, || count(&view, "you ›") >= 3),
        "{}",
        view.text()
    );
    view.line("FAKE_WRITE spec.md v2");
    shows(&view, "You said: FAKE_WRITE spec.md v2");
    view.line("");
    shows(&view, "Resume the run? [Y/n]");
    view.line("");
    assert_eq!(view.wait(PATIENCE), Some(0), "{}", view.text());
    let run = lab.env.last_run();
    let names: Vec<String> = lab
        .env
        .subjects(&run)
        .iter()
        .map(|s| s.split(':').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        names,
        ["start", "controller", "controller", "work", "build"]
    );
    let s = starts(&lab);
    // The controller's session both times; the step continued its own.
    assert_eq!(s[3].1, s[0].1, "{s:?}");
    assert!(s[4].2 && s[4].1 == s[2].1, "{s:?}");
    assert_eq!(
        lab.file_at(&format!("machine/{run}"), "spec.md").trim(),
        "v2"
    );
}

#[test]
fn a_rewound_run_forks_a_session_it_continues_again() {
    let lab = Lab::new();
    lab.env.workflow(
        "two",
        "version = 1\nname = \"two\"\n[[steps]]\nid = \"a\"\nengine = \"claude\"\nprompt = \"first\"\n[[steps]]\nid = \"b\"\nengine = \"claude\"\nprompt = \"second\"\nsession = \"a\"\n",
    );
    lab.machine(0, &["run", "two"]);
    let run = lab.env.last_run();
    let s = starts(&lab);
    let original = s[0].1.clone();
    assert_eq!(
        s[1].1, original,
        "before any rewind, b continues a's session itself"
    );
    let log = |lab: &Lab| -> Vec<serde_json::Value> {
        std::fs::read_to_string(&lab.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a log line"))
            .collect()
    };
    assert!(log(&lab)[1]["forked_from"].is_null());

    lab.machine(0, &["rewind", &run, "b"]);
    lab.machine(0, &["resume", &run]);
    let entries = log(&lab);
    assert_eq!(entries.len(), 3);
    let again = &entries[2];
    assert_eq!(
        again["forked_from"].as_str(),
        Some(original.as_str()),
        "{again}"
    );
    let forked = again["session"].as_str().expect("a session").to_string();
    assert_ne!(forked, original, "a fork has an id of its own");
    let tip = format!("machine/{run}");
    let trailer = lab.env.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Machine-Session,valueonly)",
        &tip,
    ]);
    assert_eq!(trailer.trim(), forked, "the step records the fork");
}
