//! Secret files are never committed: not by a step, a failed attempt, a parallel member, a
//! merge, a review or the edits kept when a worktree is removed — checked on every ref with
//! `git rev-list --all --objects`. The step record lists what was left out, and a workflow's
//! `commit_secrets` lets exactly the paths it names through.

use crate::common::TestEnv;

/// Writes the usual secrets, their harmless look-alikes and an ignored folder.
/// Writes the usual secrets, their harmless look-alikes and an ignored folder; every file
/// has its own content, so that `rev-list --objects` names each blob by its own path.
const WRITE: &str = "mkdir -p .aws secrets/deep && for f in .env id_rsa id_rsa.pub server.pem \
    .aws/credentials .env.example secrets/deep/token code.txt; do echo $f > $f; done; \
    echo run-folder > .codemachine/runs/$RUN/.env";

fn workflow(extra: &str) -> String {
    format!(
        r#"version = 1
name = "leaky"
{extra}
[[steps]]
id = "write"
run = ["sh", "-c", "{WRITE}"]
env = {{ RUN = "{{run_id}}" }}
[[steps]]
id = "members-a"
group = "g"
run = ["sh", "-c", "echo ka > a.key && echo a > a.txt"]
[[steps]]
id = "members-b"
group = "g"
run = ["sh", "-c", "echo kb > b.p12 && echo b > b.txt"]
[[steps]]
id = "fails"
run = ["sh", "-c", "echo kl > .env.local && echo half > half.txt && exit 1"]
"#
    )
}

/// Every path in any object reachable from any ref, and every path any commit changed.
fn all_paths(env: &TestEnv) -> Vec<String> {
    let objects = env.git(&["rev-list", "--all", "--objects"]);
    let changed = env.git(&["log", "--all", "-m", "--name-only", "--format="]);
    objects
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_string()))
        .chain(changed.lines().map(str::to_string))
        .filter(|p| !p.is_empty())
        .collect()
}

fn base(env: &TestEnv) {
    // The run folder ignored too: it is then added with `git add -f`.
    env.write(".gitignore", "secrets/\n.codemachine/runs/\n");
    env.git(&["add", ".gitignore"]);
    env.git(&["commit", "-q", "-m", "ignore secrets/"]);
}

#[test]
fn secret_files_reach_no_ref_and_the_record_lists_them() {
    let env = TestEnv::new();
    base(&env);
    env.workflow("leaky", &workflow(""));
    let r = env.machine_code(1, &["run", "leaky", "--plain"]);
    let run = env.last_run();
    let paths = all_paths(&env);
    for secret in [
        ".env",
        "id_rsa",
        "server.pem",
        "credentials",
        "a.key",
        "b.p12",
        ".env.local",
        "token",
        "secrets",
    ] {
        assert!(
            !paths
                .iter()
                .any(|p| p == secret || p.ends_with(&format!("/{secret}"))),
            "{secret} reached a ref: {paths:?}"
        );
    }
    for kept in [
        "id_rsa.pub",
        ".env.example",
        "code.txt",
        "a.txt",
        "b.txt",
        "half.txt",
    ] {
        assert!(
            paths.iter().any(|p| p == kept),
            "{kept} is missing: {paths:?}"
        );
    }
    // The failed attempt is kept, without the secret.
    let attempts = env.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/machine/attempts/",
    ]);
    assert!(attempts.contains("-failed"), "{attempts}");
    // The record says what was left out, and why.
    let record = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/01-write/step.toml"),
    ]);
    for p in [".env", "id_rsa", "server.pem", ".aws/credentials"] {
        assert!(record.contains(&format!("path = \"{p}\"")), "{p}: {record}");
    }
    assert!(
        record.contains("reason = \"secret file (*.pem)\""),
        "{record}"
    );
    assert!(
        !record.contains("path = \"secrets/"),
        "ignored files are not listed: {record}"
    );
    let failed = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/04-fails/step.toml"),
    ]);
    assert!(failed.contains("path = \".env.local\""), "{failed}");
    // The files stay in the worktree, also after the failed step's reset.
    let wt = env.worktree(&run);
    for p in [
        ".env",
        "id_rsa",
        "server.pem",
        ".aws/credentials",
        ".env.local",
    ] {
        assert!(wt.join(p).exists(), "{p} was removed from the worktree");
    }
    assert!(
        !wt.join("half.txt").exists(),
        "the failed step's work is reset"
    );
    // A member's worktree holding what its commit left out stays where it is, not parked (a
    // parked worktree is emptied of untracked files); rm removes it with the run's.
    for (member, file) in [("members-a", "a.key"), ("members-b", "b.p12")] {
        let mwt = env.worktree(&format!("{run}--{member}"));
        assert!(mwt.join(file).exists(), "{member}'s {file} is gone");
    }
    // Reported as the run goes, and by `log` and `show`.
    assert!(r.stderr.contains("left out of `write`'s commit"), "{r}");
    assert!(r.stderr.contains("server.pem"), "{r}");
    let log = env.machine_ok(&["log", &run]);
    assert!(
        log.stdout
            .contains("left out .aws/credentials (secret file (.aws/credentials))"),
        "{log}"
    );
    let show = env.machine_ok(&["show", &run, "write"]);
    assert!(
        show.stdout.contains("left out of this commit: id_rsa"),
        "{show}"
    );
    // Edits kept when the worktree is removed leave them out too.
    std::fs::write(wt.join("more.txt"), "more").expect("write");
    env.machine_ok(&["rm", &run, "--force"]);
    assert!(!env.worktree(&format!("{run}--members-a")).exists());
    let paths = all_paths(&env);
    assert!(paths.iter().any(|p| p == "more.txt"), "{paths:?}");
    assert!(
        !paths.iter().any(|p| p == ".env" || p == ".env.local"),
        "{paths:?}"
    );
}

#[test]
fn a_workflow_commits_exactly_the_secret_it_allows() {
    let env = TestEnv::new();
    base(&env);
    env.workflow("leaky", &workflow("commit_secrets = [\"server.pem\"]"));
    env.machine_code(1, &["run", "leaky"]);
    let run = env.last_run();
    let tree = env.git(&["ls-tree", "-r", "--name-only", &format!("machine/{run}")]);
    assert!(tree.lines().any(|p| p == "server.pem"), "{tree}");
    for p in [".env", "id_rsa", ".aws/credentials"] {
        assert!(!tree.lines().any(|l| l == p), "{p}: {tree}");
    }
    let record = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/01-write/step.toml"),
    ]);
    assert!(!record.contains("path = \"server.pem\""), "{record}");
}

#[test]
fn a_secret_tracked_before_the_run_is_committed_when_changed() {
    let env = TestEnv::new();
    env.write("config/dev.pem", "old\n");
    env.git(&["add", "config/dev.pem"]);
    env.git(&["commit", "-q", "-m", "dev cert"]);
    env.workflow(
        "renew",
        r#"version = 1
name = "renew"
[[steps]]
id = "renew"
run = ["sh", "-c", "echo new > config/dev.pem"]
"#,
    );
    env.machine_ok(&["run", "renew"]);
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:config/dev.pem")]),
        "new\n"
    );
}

#[test]
fn a_bad_commit_secrets_path_is_a_usage_error() {
    let env = TestEnv::new();
    env.workflow("bad", "version = 1\nname = \"bad\"\ncommit_secrets = [\"../x.pem\"]\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n");
    let r = env.machine_code(2, &["validate", "bad"]);
    assert!(r.stderr.contains("`commit_secrets`: `../x.pem`"), "{r}");
    assert!(env.runs().is_empty());
}

#[test]
fn a_secret_the_step_s_program_commits_itself_reaches_no_ref_either() {
    let env = TestEnv::new();
    env.workflow(
        "self-commit",
        r#"version = 1
name = "self-commit"
[[steps]]
id = "commits"
run = ["sh", "-c", "echo one > .env && echo work > work.txt && git add -A && git commit -qm mine && echo more > more.txt"]
[[steps]]
id = "member"
group = "g"
run = ["sh", "-c", "echo two > m.pem && echo m > m.txt && git add -A && git commit -qm member"]
[[steps]]
id = "other"
group = "g"
run = ["sh", "-c", "echo o > o.txt"]
[[steps]]
id = "fails"
run = ["sh", "-c", "echo three > f.key && echo f > f.txt && git add -A && git commit -qm failing && exit 1"]
"#,
    );
    env.machine_code(1, &["run", "self-commit"]);
    let run = env.last_run();
    let paths = all_paths(&env);
    for secret in [".env", "m.pem", "f.key"] {
        assert!(
            !paths.iter().any(|p| p == secret),
            "{secret} reached a ref: {paths:?}"
        );
    }
    for kept in ["work.txt", "more.txt", "m.txt", "o.txt", "f.txt"] {
        assert!(
            paths.iter().any(|p| p == kept),
            "{kept} is missing: {paths:?}"
        );
    }
    let tree = env.git(&["ls-tree", "-r", "--name-only", &format!("machine/{run}")]);
    assert!(tree.lines().any(|p| p == "work.txt"), "{tree}");
    let wt = env.worktree(&run);
    for p in [".env", "f.key"] {
        assert!(wt.join(p).exists(), "{p} stays in the worktree");
    }
}
