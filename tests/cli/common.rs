//! The test environment: a temp HOME, no user or system git config, fixed dates, a repository
//! with one commit, and helpers to run `git` and `git-machine` in it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_git-machine");

pub struct TestEnv {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub repo: PathBuf,
}

impl TestEnv {
    /// A repository `repo` with a README committed on `main`.
    pub fn new() -> TestEnv {
        let tmp = tempfile::Builder::new()
            .prefix("gm-test-")
            .tempdir()
            .expect("temp dir");
        let home = tmp.path().join("home");
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&repo).expect("repo");
        std::fs::write(
            home.join(".gitconfig"),
            // `machine.watch` as by default: the suite's small repositories are staged inside
            // git machine, as a user's are; watched.rs runs the same steps watched.
            "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n",
        )
        .expect("gitconfig");
        let env = TestEnv { tmp, home, repo };
        env.git(&["init", "-q"]);
        env.write("README.md", "# test project\n");
        env.git(&["add", "README.md"]);
        env.git(&["commit", "-q", "-m", "initial"]);
        env
    }

    pub fn apply_env(&self, cmd: &mut Command) {
        for (k, _) in std::env::vars() {
            if k.starts_with("GIT_") || k == "NO_COLOR" || k.starts_with("MACHINE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_CACHE_HOME", self.tmp.path().join("cache"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", self.home.join(".gitconfig"))
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00 +0000")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00 +0000")
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env("GIT_PAGER", "cat")
            .env("PAGER", "cat");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.repo.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("dirs");
        }
        std::fs::write(p, text).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).expect("read")
    }

    /// Run git in the repository; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = self.git_output(args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn git_output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("git");
        self.apply_env(&mut cmd);
        cmd.current_dir(&self.repo).args(args).stdin(Stdio::null());
        cmd.output().expect("spawn git")
    }

    /// A `git-machine` command ready to run in the repository.
    pub fn machine_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        self.apply_env(&mut cmd);
        cmd.current_dir(&self.repo).args(args).stdin(Stdio::null());
        cmd
    }

    pub fn machine(&self, args: &[&str]) -> Run {
        let out = self.machine_cmd(args).output().expect("spawn git-machine");
        Run::from(out)
    }

    /// Run git-machine and require exit code `code`.
    pub fn machine_code(&self, code: i32, args: &[&str]) -> Run {
        let r = self.machine(args);
        assert_eq!(
            r.code, code,
            "git machine {args:?}: expected exit {code}\n{r}"
        );
        r
    }

    pub fn machine_ok(&self, args: &[&str]) -> Run {
        self.machine_code(0, args)
    }

    /// Write a workflow into `.codemachine/workflows/<name>.toml` (not committed) and trust
    /// it as its author would, with `git machine trust <name>`.
    pub fn workflow(&self, name: &str, toml: &str) {
        self.untrusted_workflow(name, toml);
        self.machine_ok(&["trust", name]);
    }

    /// Write a workflow as one that came with the repository: not trusted here.
    pub fn untrusted_workflow(&self, name: &str, toml: &str) {
        self.write(&format!(".codemachine/workflows/{name}.toml"), toml);
    }

    /// Id of the only (or newest) run.
    pub fn last_run(&self) -> String {
        let out = self.git(&[
            "for-each-ref",
            "--format=%(refname:lstrip=3)",
            "refs/heads/machine/",
        ]);
        out.lines().last().expect("a run exists").to_string()
    }

    pub fn runs(&self) -> Vec<String> {
        let out = self.git(&[
            "for-each-ref",
            "--format=%(refname:lstrip=3)",
            "refs/heads/machine/",
        ]);
        out.lines().map(str::to_string).collect()
    }

    pub fn common_dir(&self) -> PathBuf {
        self.repo.join(".git")
    }

    /// Where the run's worktree is: under this test's `$XDG_CACHE_HOME/git-machine/worktrees/`
    /// (one folder per repository; each test has a single repository).
    pub fn worktree(&self, run: &str) -> PathBuf {
        let root = self.tmp.path().join("cache/git-machine/worktrees");
        let repo_dir = std::fs::read_dir(&root)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path())
            .unwrap_or_else(|| root.join("none"));
        repo_dir.join(run)
    }

    /// Subjects of the run branch's first-parent history, oldest first (base excluded).
    /// Subjects of the run's first-parent history, without the checkpoints that publish each
    /// finished member of a parallel group (their order depends on which finished first).
    pub fn subjects(&self, run: &str) -> Vec<String> {
        let out = self.git(&[
            "log",
            "--first-parent",
            "--reverse",
            "--format=%s%x09%(trailers:key=Machine-Member,valueonly,separator=)",
            &format!("main..machine/{run}"),
        ]);
        out.lines()
            .filter_map(|l| match l.split_once('\t') {
                Some((s, member)) if member.trim().is_empty() => Some(s.to_string()),
                Some(_) => None,
                None => Some(l.to_string()),
            })
            .collect()
    }

    /// Everything that must not change in the user's checkout: HEAD, index, worktree, stash.
    pub fn user_state(&self) -> String {
        let head = self.git(&["rev-parse", "HEAD"]);
        let branch = self.git(&["symbolic-ref", "-q", "HEAD"]);
        let status = self.git(&["status", "--porcelain=v2", "--untracked-files=all"]);
        let index = self.git(&["ls-files", "-s"]);
        let stash = self.git_output(&["stash", "list"]);
        let diff = self.git(&["diff"]);
        format!(
            "{head}{branch}{status}{index}{}{diff}",
            String::from_utf8_lossy(&stash.stdout)
        )
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Poll `check` until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live (non-zombie) processes whose command line contains `marker`: (pid, argv[0]).
pub fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().chars().next());
        if matches!(state, Some(Some('Z' | 'X')) | None) {
            continue;
        }
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        found.push((pid, String::from_utf8_lossy(argv0).into_owned()));
    }
    found
}
