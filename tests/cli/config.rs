//! Settings read from git config with git's precedence (flag, `git -c`, repository, global),
//! and output paged like git's: through the pager git would choose on a terminal, straight
//! otherwise, and a reader that goes away is not an error.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{TestEnv, BIN};
use crate::pty::OnPty;

/// A run of one command step that writes a file, for `log` and `show` to print.
fn env_with_a_run() -> TestEnv {
    let env = TestEnv::new();
    env.workflow(
        "w",
        "version = 1\nname = \"w\"\ndescription = \"w\"\n\n[[steps]]\nid = \"write\"\nrun = [\"sh\", \"-c\", \"seq 1 60000 > numbers.txt\"]\n",
    );
    env.machine_ok(&["run", "w"]);
    env
}

/// A pager script that copies its input to `paged.txt` (and to the terminal).
fn recording_pager(env: &TestEnv) -> (String, PathBuf) {
    let record = env.tmp.path().join("paged.txt");
    let script = env.tmp.path().join("pager.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntee '{}'\n", record.display()))
        .expect("pager script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make the pager runnable");
    (script.display().to_string(), record)
}

/// `git machine <args>` on a terminal with `GIT_PAGER` the recording pager: what it paged.
fn paged_on_terminal(env: &TestEnv, args: &[&str]) -> Option<String> {
    let (pager, record) = recording_pager(env);
    let mut term = OnPty::spawn_with(env, args, 120, &[("GIT_PAGER".into(), pager)]);
    assert_eq!(
        term.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        term.text()
    );
    std::fs::read_to_string(record).ok()
}

#[test]
fn log_on_a_terminal_goes_through_the_pager_git_would_use() {
    let env = env_with_a_run();
    let run = env.last_run();
    let paged = paged_on_terminal(&env, &["log", &run]).expect("the pager ran");
    assert!(paged.contains(&run), "{paged}");
    assert!(paged.contains("numbers.txt"), "{paged}");
}

#[test]
fn no_pager_flag_and_a_pipe_bypass_the_pager() {
    let env = env_with_a_run();
    let run = env.last_run();
    assert_eq!(paged_on_terminal(&env, &["--no-pager", "log", &run]), None);
    assert_eq!(paged_on_terminal(&env, &["log", "--no-pager", &run]), None);
    let (pager, record) = recording_pager(&env);
    let out = env
        .machine_cmd(&["log", &run])
        .env("GIT_PAGER", pager)
        .output()
        .expect("spawn git-machine");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("run {run}")));
    assert!(!record.exists(), "no pager when stdout is a pipe");
}

#[test]
fn show_into_a_reader_that_stops_early_ends_quietly() {
    let env = env_with_a_run();
    let run = env.last_run();
    let mut child = env
        .machine_cmd(&["show", &run, "write"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git-machine");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("read a line");
    // The reader is gone: dropped with the BufReader above.
    assert!(first.starts_with("commit "), "{first}");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn log_into_a_closed_pipe_ends_quietly() {
    let env = env_with_a_run();
    let run = env.last_run();
    let mut child = env
        .machine_cmd(&["log", &run])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git-machine");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[cfg(feature = "test-fakes")]
mod engines {
    use super::*;
    use crate::common::Run;

    const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

    /// The fake agent behind each engine, and the log of its starts.
    struct Agents {
        env: TestEnv,
        bin: PathBuf,
        log: PathBuf,
    }

    impl Agents {
        fn new() -> Agents {
            let env = TestEnv::new();
            let bin = env.tmp.path().join("agents");
            std::fs::create_dir_all(&bin).expect("bin dir");
            for program in ["claude", "codex", "gemini"] {
                std::os::unix::fs::symlink(FAKE, bin.join(program)).expect("link the fake");
            }
            let log = env.tmp.path().join("agent-log.jsonl");
            Agents { env, bin, log }
        }

        fn with_agents(&self, cmd: &mut Command) {
            for (program, var) in [
                ("claude", "MACHINE_CLAUDE_BIN"),
                ("codex", "MACHINE_CODEX_BIN"),
                ("gemini", "MACHINE_GEMINI_BIN"),
            ] {
                cmd.env(var, self.bin.join(program));
            }
            cmd.env("FAKE_AGENT_LOG", &self.log);
        }

        fn machine(&self, code: i32, args: &[&str]) -> Run {
            let mut cmd = self.env.machine_cmd(args);
            self.with_agents(&mut cmd);
            let r = Run::from(cmd.output().expect("spawn git-machine"));
            assert_eq!(r.code, code, "git machine {args:?}\n{r}");
            r
        }

        /// Each start of an agent: (cli, argv); the log is emptied.
        fn starts(&self) -> Vec<(String, Vec<String>)> {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let _ = std::fs::remove_file(&self.log);
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                    let argv = v["argv"]
                        .as_array()
                        .expect("argv")
                        .iter()
                        .map(|a| a.as_str().expect("string").to_string())
                        .collect();
                    (v["cli"].as_str().expect("cli").to_string(), argv)
                })
                .collect()
        }

        fn clis(&self) -> Vec<String> {
            self.starts().into_iter().map(|(cli, _)| cli).collect()
        }
    }

    const THREE_STEPS: &str = r#"version = 1
name = "t"
description = "t"

[[steps]]
id = "named"
engine = "claude"
prompt = "one"

[[steps]]
id = "open"
prompt = "two"

[[steps]]
id = "fallback"
engine = ["claude", "codex"]
prompt = "three"
"#;

    #[test]
    fn config_engine_fills_only_steps_that_name_none_and_the_flag_beats_all() {
        let a = Agents::new();
        a.env.workflow("t", THREE_STEPS);
        a.machine(0, &["run", "t"]);
        assert_eq!(a.clis(), ["claude", "claude", "claude"], "built-in default");
        a.env.git(&["config", "machine.engine", "codex"]);
        a.machine(0, &["run", "t"]);
        assert_eq!(a.clis(), ["claude", "codex", "claude"]);
        a.machine(0, &["run", "t", "--engine", "gemini"]);
        assert_eq!(a.clis(), ["gemini", "gemini", "gemini"]);
    }

    #[test]
    fn git_dash_c_beats_the_repository_config() {
        let a = Agents::new();
        a.env.workflow("t", THREE_STEPS);
        a.env.git(&["config", "machine.engine", "codex"]);
        let bin_dir = std::path::Path::new(BIN).parent().expect("bin dir");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("git");
        a.env.apply_env(&mut cmd);
        a.with_agents(&mut cmd);
        let out = cmd
            .current_dir(&a.env.repo)
            .env("PATH", path)
            .args(["-c", "machine.engine=gemini", "machine", "run", "t"])
            .output()
            .expect("spawn git");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(a.clis(), ["claude", "gemini", "claude"]);
    }

    #[test]
    fn config_model_fills_only_steps_without_one() {
        let a = Agents::new();
        a.env.workflow(
            "t",
            "version = 1\nname = \"t\"\ndescription = \"t\"\n[[steps]]\nid = \"a\"\nengine = \"claude\"\nmodel = \"own\"\nprompt = \"one\"\n[[steps]]\nid = \"b\"\nengine = \"claude\"\nprompt = \"two\"\n",
        );
        a.env.git(&["config", "machine.model", "configured"]);
        a.machine(0, &["run", "t"]);
        let models: Vec<_> = a
            .starts()
            .iter()
            .map(|(_, argv)| value_of(argv, "--model"))
            .collect();
        assert_eq!(models, [Some("own".into()), Some("configured".into())]);
        a.machine(0, &["run", "t", "--model", "flag"]);
        let models: Vec<_> = a
            .starts()
            .iter()
            .map(|(_, argv)| value_of(argv, "--model"))
            .collect();
        assert_eq!(models, [Some("flag".into()), Some("flag".into())]);
    }

    #[test]
    fn engine_args_follow_the_steps_own_and_are_kept_across_a_resume() {
        let a = Agents::new();
        a.env.workflow(
            "t",
            "version = 1\nname = \"t\"\ndescription = \"t\"\n[[steps]]\nid = \"a\"\nengine = \"claude\"\nargs = [\"--add-dir\", \"/docs\"]\nprompt = \"one\"\ncheckpoint = true\n[[steps]]\nid = \"b\"\nengine = \"claude\"\nprompt = \"two\"\n",
        );
        a.env.git(&[
            "config",
            "machine.claude.args",
            "--max-turns 20 --append-system-prompt 'be brief'",
        ]);
        a.machine(1, &["run", "t", "--no-input"]);
        let starts = a.starts();
        let argv = &starts[0].1;
        let at = |w: &str| argv.iter().position(|a| a == w).expect(w);
        assert!(at("--add-dir") < at("--max-turns"), "{argv:?}");
        assert_eq!(value_of(argv, "--max-turns").as_deref(), Some("20"));
        assert_eq!(
            value_of(argv, "--append-system-prompt").as_deref(),
            Some("be brief")
        );
        a.env
            .git(&["config", "machine.claude.args", "--max-turns 3"]);
        let run = a.env.last_run();
        a.machine(0, &["resume", &run, "--no-input"]);
        let starts = a.starts();
        assert_eq!(
            value_of(&starts[0].1, "--max-turns").as_deref(),
            Some("20"),
            "the run keeps its settings"
        );
    }

    #[test]
    fn malformed_engine_args_are_a_usage_error() {
        let a = Agents::new();
        a.env.workflow("t", THREE_STEPS);
        a.env.git(&["config", "machine.claude.args", "--x 'open"]);
        let r = a.machine(2, &["run", "t"]);
        assert!(
            r.stderr.contains("error: git config machine.claude.args"),
            "{r}"
        );
        assert!(r.stderr.contains("hint:"), "{r}");
    }

    fn value_of(argv: &[String], flag: &str) -> Option<String> {
        argv.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
    }
}
