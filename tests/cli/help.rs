//! git's conventions for help: the committed man pages match the clap definitions, `git help
//! machine` shows the installed page, `git machine help` works without one, and the completion
//! scripts complete subcommands, run ids and workflow names (also under git's own bash
//! completion).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestEnv, BIN};

/// Where the committed pages are.
fn committed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

/// The `*.1` files of a folder, by name.
fn pages_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .map(|p| {
            let name = p
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("readable page"))
        })
        .collect();
    out.sort();
    out
}

/// Run `install-man <dir>` through the binary, the one generator; returns `<dir>/man1`.
fn install_man(env: &TestEnv, dir: &Path) -> PathBuf {
    let dir_s = dir.to_str().expect("utf-8 temp path");
    let r = env.machine_ok(&["install-man", dir_s]);
    assert!(r.stdout.contains("man1"), "{r}");
    dir.join("man1")
}

/// `MACHINE_BLESS=1 cargo test --all-features man_pages` rewrites man/ from the definitions.
#[test]
fn man_pages_are_up_to_date() {
    let env = TestEnv::new();
    let generated = pages_in(&install_man(&env, &env.tmp.path().join("man")));
    assert!(generated.len() > 10, "{generated:?}");
    let committed = pages_in(&committed_dir());
    if generated == committed {
        return;
    }
    if std::env::var_os("MACHINE_BLESS").is_some_and(|v| v == "1") {
        for (name, _) in &committed {
            std::fs::remove_file(committed_dir().join(name)).expect("remove stale page");
        }
        for (name, text) in &generated {
            std::fs::write(committed_dir().join(name), text).expect("write page");
        }
        return;
    }
    let names = |p: &[(String, Vec<u8>)]| p.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let stale: Vec<String> = generated
        .iter()
        .filter(|g| !committed.contains(g))
        .map(|(n, _)| n.clone())
        .collect();
    panic!(
        "the man pages in man/ are stale (differing: {stale:?}; committed: {:?}); \
         regenerate them with `MACHINE_BLESS=1 cargo test --all-features man_pages` \
         and commit man/",
        names(&committed)
    );
}

/// PATH with the built git-machine first, as an installed one would be.
fn path_with_binary() -> String {
    let bin_dir = Path::new(BIN).parent().expect("binary has a folder");
    let system = std::env::var("PATH").unwrap_or_default();
    format!("{}:{system}", bin_dir.display())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn git_help_machine_shows_the_installed_page() {
    if !have("man") {
        eprintln!("skipped: `man` is not installed (apt-get install man-db)");
        return;
    }
    let env = TestEnv::new();
    let root = env.tmp.path().join("man");
    install_man(&env, &root);
    for args in [&["help", "machine"][..], &["machine", "--help"][..]] {
        let mut git = Command::new("git");
        env.apply_env(&mut git);
        let out = git
            .current_dir(&env.repo)
            .args(args)
            .env("PATH", path_with_binary())
            .env("MANPATH", &root)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "200")
            .output()
            .expect("spawn git");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("EXIT STATUS") && text.contains("SYNOPSIS"),
            "git {args:?}: {}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("git machine run"), "{text}");
    }
}

#[test]
fn install_man_says_how_to_reach_the_pages() {
    let env = TestEnv::new();
    let r = env.machine_ok(&["install-man"]);
    let man1 = env.home.join(".local/share/man/man1");
    assert!(man1.join("git-machine.1").is_file(), "{r}");
    assert!(man1.join("git-machine-run.1").is_file(), "{r}");
    assert!(r.stdout.contains(&man1.display().to_string()), "{r}");
    assert!(r.stderr.contains("MANPATH"), "{r}");
}

#[test]
fn help_subcommand_prints_long_help_without_a_man_page() {
    let env = TestEnv::new();
    let top = env.machine_ok(&["help"]);
    assert!(top.stdout.contains("Usage: git machine"), "{top}");
    assert!(top.stdout.contains("install-man"), "{top}");
    let run = env.machine_ok(&["help", "run"]);
    assert!(run.stdout.contains("Usage: git machine run"), "{run}");
    assert!(run.stdout.contains("<WORKFLOW>"), "{run}");
    let short = env.machine_ok(&["run", "-h"]);
    assert!(short.stdout.len() < run.stdout.len(), "{short}\n{run}");
    let bad = env.machine_code(2, &["help", "nope"]);
    assert!(bad.stderr.contains("error: `nope`"), "{bad}");
    assert!(bad.stderr.contains("hint:"), "{bad}");
}

#[test]
fn completion_scripts_name_subcommands_and_flags() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = env.machine_ok(&["completions", shell]);
        for word in ["resume", "install-man", "no-input", "__complete"] {
            assert!(r.stdout.contains(word), "{shell}: no {word}\n{r}");
        }
        assert!(
            !r.stdout.contains("__complete\""),
            "{shell} offers __complete"
        );
    }
    // Autoloaded, zsh's file calls `_git-machine` at the `funcstack` test: helpers come first.
    let zsh = env.machine_ok(&["completions", "zsh"]).stdout;
    let helper = zsh
        .find("_git_machine_runs()")
        .expect("zsh defines _git_machine_runs");
    assert!(
        helper < zsh.find("$funcstack[1]").expect("clap's tail"),
        "{zsh}"
    );
    let bash = env.machine_ok(&["completions", "bash"]);
    assert!(bash.stdout.contains("_git_machine()"), "{bash}");
    env.machine_code(2, &["completions", "tcsh"]);
}

#[test]
fn complete_lists_runs_and_workflows() {
    let env = TestEnv::new();
    env.git(&["branch", "machine/r1-test"]);
    env.workflow("hello", "[workflow]\nname = \"hello\"\n");
    let runs = env.machine_ok(&["__complete", "runs"]);
    assert_eq!(runs.stdout.trim(), "r1-test", "{runs}");
    let workflows = env.machine_ok(&["__complete", "workflows"]);
    assert!(
        workflows.stdout.lines().any(|l| l == "hello"),
        "{workflows}"
    );
    assert!(workflows.stdout.lines().any(|l| l == "demo"), "{workflows}");
}

/// Source the bash script (and git's completion when given), run `body`, return its stdout.
fn bash_completion(env: &TestEnv, git_completion: Option<&Path>, body: &str) -> String {
    let script = env.machine_ok(&["completions", "bash"]).stdout;
    let path = env.tmp.path().join("git-machine.bash");
    std::fs::write(&path, script).expect("write script");
    let git = git_completion
        .map(|p| format!("source {}\n", p.display()))
        .unwrap_or_default();
    let program = format!("{git}source {}\n{body}", path.display());
    let mut bash = Command::new("bash");
    env.apply_env(&mut bash);
    let out = bash
        .current_dir(&env.repo)
        .args(["--norc", "--noprofile", "-c", &program])
        .env("PATH", path_with_binary())
        .output()
        .expect("spawn bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn replies(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn bash_completes_subcommands_runs_and_workflows() {
    let env = TestEnv::new();
    env.git(&["branch", "machine/r1-test"]);
    env.workflow("hello", "[workflow]\nname = \"hello\"\n");
    let call = |words: &str| {
        format!(
            "COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n\
             __git_machine_complete git-machine \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
    };
    let out = bash_completion(&env, None, &call("git-machine ru"));
    assert!(replies(&out).contains(&"run"), "{out}");
    let out = bash_completion(&env, None, &call("git-machine status r"));
    assert!(replies(&out).contains(&"r1-test"), "{out}");
    let out = bash_completion(&env, None, &call("git-machine run he"));
    assert!(replies(&out).contains(&"hello"), "{out}");
    let out = bash_completion(&env, None, &call("git-machine run --pl"));
    assert!(replies(&out).contains(&"--plain"), "{out}");
}

/// git's completion for `git machine …` calls `_git_machine` with `words`, `cword`, `cur`
/// set. With git's script installed the real dispatch is used; else the same variables are set
/// here as `__git_main` sets them.
#[test]
fn bash_completes_git_machine_under_gits_completion() {
    let env = TestEnv::new();
    env.git(&["branch", "machine/r1-test"]);
    let git_script = Path::new("/usr/share/bash-completion/completions/git");
    let (script, call) = if git_script.is_file() {
        (
            Some(git_script),
            "COMP_WORDS=(git machine @ARGS@); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n\
             COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}\n\
             __git_wrap__git_main\nprintf '%s|\\n' \"${COMPREPLY[@]}\"",
        )
    } else {
        eprintln!("git's bash completion is not installed: calling _git_machine directly");
        (
            None,
            "words=(git machine @ARGS@); cword=$(( ${#words[@]} - 1 )); cur=${words[cword]}\n\
             __git_cmd_idx=1\n_git_machine\nprintf '%s|\\n' \"${COMPREPLY[@]}\"",
        )
    };
    let out = bash_completion(&env, script, &call.replace("@ARGS@", "ru"));
    assert!(replies(&out).contains(&"run |"), "{out}");
    let out = bash_completion(&env, script, &call.replace("@ARGS@", "status r"));
    assert!(replies(&out).contains(&"r1-test |"), "{out}");
}

/// fish and zsh are often not installed: these run only where they are.
#[test]
fn fish_completes_subcommands_and_runs() {
    if !have("fish") {
        eprintln!("skipped: fish is not installed");
        return;
    }
    let env = TestEnv::new();
    env.git(&["branch", "machine/r1-test"]);
    let path = env.tmp.path().join("git-machine.fish");
    std::fs::write(&path, env.machine_ok(&["completions", "fish"]).stdout).expect("write");
    let program = format!(
        "source {}; complete -C 'git-machine ru'; complete -C 'git-machine status r'",
        path.display()
    );
    let mut fish = Command::new("fish");
    env.apply_env(&mut fish);
    let out = fish
        .current_dir(&env.repo)
        .args(["--no-config", "-c", &program])
        .env("PATH", path_with_binary())
        .output()
        .expect("spawn fish");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("run\t")), "{text}");
    assert!(text.lines().any(|l| l == "r1-test"), "{text}");
}

#[test]
fn zsh_script_parses() {
    if !have("zsh") {
        eprintln!("skipped: zsh is not installed");
        return;
    }
    let env = TestEnv::new();
    let path = env.tmp.path().join("_git-machine");
    std::fs::write(&path, env.machine_ok(&["completions", "zsh"]).stdout).expect("write");
    let out = Command::new("zsh")
        .args(["-n", path.to_str().expect("utf-8 path")])
        .output()
        .expect("spawn zsh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every mistake on the command line reads the same way: `error:` what, `hint:` how, exit 2,
/// whether clap or git machine found it, in every subcommand.
#[test]
fn every_usage_mistake_is_an_error_and_a_hint_with_exit_2() {
    let env = TestEnv::new();
    let help = env.machine_ok(&["help"]);
    let subs: Vec<String> = help
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(str::to_string)
        .collect();
    assert!(subs.len() > 15, "the subcommands from `help`: {subs:?}");
    let mut cases: Vec<Vec<String>> = subs
        .iter()
        .map(|s| vec![s.clone(), "--no-such-flag".to_string()])
        .collect();
    for case in [
        &["run"][..],
        &["run", "demo", "--var", "x"],
        &["run", "demo", "--var", "x=1"],
        &["run", "demo", "--jobs", "0"],
        &["run", "no-such-workflow"],
        &["gc", "--older-than", "soon"],
        &["completions", "tcsh"],
        &["resume", "no-such-run"],
        &["--no-such-flag"],
    ] {
        cases.push(case.iter().map(|s| s.to_string()).collect());
    }
    for case in &cases {
        let args: Vec<&str> = case.iter().map(String::as_str).collect();
        let r = env.machine(&args);
        assert_eq!(r.code, 2, "git machine {args:?}\n{r}");
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert!(lines[0].starts_with("error: "), "git machine {args:?}\n{r}");
        assert!(
            lines.iter().any(|l| l.starts_with("hint: ")),
            "git machine {args:?} says how to fix it\n{r}"
        );
        assert!(
            lines
                .iter()
                .all(|l| ["error: ", "hint: ", "caused by: ", "  "]
                    .iter()
                    .any(|p| l.starts_with(p))),
            "git machine {args:?}: one style\n{r}"
        );
    }
    let unknown = env.machine_code(2, &["run", "demo", "--var", "feture_name=x"]);
    assert!(
        unknown
            .stderr
            .starts_with("error: --var feture_name: workflow `demo` has no var `feture_name`\nhint: did you mean `feature_name`?"),
        "{unknown}"
    );
    assert!(env.runs().is_empty(), "nothing was created");
}
