//! The step's workspace through the real binary: submodules checked out from the user's clones,
//! `[workspace]` copy / link / setup (and `machine.workspace.*`), and LFS pointers.

use std::path::Path;
use std::process::Command;

use crate::common::TestEnv;

/// Run git in `dir` with the test's environment; panics on failure.
fn git_in(env: &TestEnv, dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    env.apply_env(&mut cmd);
    let out = cmd.current_dir(dir).args(args).output().expect("spawn git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository at `<tmp>/<name>` with `file` holding `text`, committed.
fn upstream(env: &TestEnv, name: &str, file: &str, text: &str) -> std::path::PathBuf {
    let dir = env.tmp.path().join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    git_in(env, &dir, &["init", "-q"]);
    std::fs::write(dir.join(file), text).expect("write");
    git_in(env, &dir, &["add", file]);
    git_in(env, &dir, &["commit", "-q", "-m", name]);
    dir
}

/// The test repository with submodule `lib` (holding `lib.txt`), which has submodule `nested`
/// (holding `deep.txt`), both initialised in the user's checkout; the upstream repositories
/// are then deleted, so nothing but the user's own clones can serve them.
fn with_submodules(env: &TestEnv) {
    let nested = upstream(env, "nested-up", "deep.txt", "deep text\n");
    let lib = upstream(env, "lib-up", "lib.txt", "lib text\n");
    let allow = ["-c", "protocol.file.allow=always"];
    let add = |dir: &Path, url: &Path, path: &str| {
        let url = url.to_str().expect("utf-8 path");
        git_in(
            env,
            dir,
            &[&allow[..], &["submodule", "add", "-q", url, path]].concat(),
        );
        git_in(env, dir, &["commit", "-q", "-m", &format!("add {path}")]);
    };
    add(&lib, &nested, "nested");
    add(&env.repo, &lib, "lib");
    env.git(
        &[
            &allow[..],
            &["submodule", "update", "-q", "--init", "--recursive"],
        ]
        .concat(),
    );
    std::fs::remove_dir_all(&lib).expect("upstream removed");
    std::fs::remove_dir_all(&nested).expect("upstream removed");
    assert_eq!(env.read("lib/nested/deep.txt"), "deep text\n");
}

fn step_toml(env: &TestEnv, run: &str, record: &str) -> String {
    env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/{record}/step.toml"),
    ])
}

const READ_SUBMODULES: &str = r#"version = 1
name = "read"
[[steps]]
id = "read"
run = ["sh", "-c", "cat lib/lib.txt lib/nested/deep.txt > seen.txt && d=$(git -C lib rev-parse --absolute-git-dir) && if find \"$d/objects\" -type f -links +1 | grep -q .; then echo shared > shared.txt; fi"]
[[steps]]
id = "left"
group = "both"
run = ["sh", "-c", "cat lib/nested/deep.txt > left.txt"]
[[steps]]
id = "right"
group = "both"
run = ["sh", "-c", "cat lib/lib.txt > right.txt"]
"#;

#[test]
fn submodules_are_checked_out_in_run_and_member_worktrees_from_the_users_clones() {
    let env = TestEnv::new();
    with_submodules(&env);
    env.workflow("read", READ_SUBMODULES);
    let config_before = std::fs::read_to_string(env.common_dir().join("config")).expect("config");
    let user_before = env.user_state();
    let r = env.machine_ok(&["run", "read"]);
    let run = env.last_run();
    let show = |path: &str| env.git(&["show", &format!("machine/{run}:{path}")]);
    assert_eq!(show("seen.txt"), "lib text\ndeep text\n", "{r}");
    assert_eq!(show("left.txt"), "deep text\n");
    assert_eq!(show("right.txt"), "lib text\n");
    // Finished members' worktrees left their paths for the pool, their submodule clones with
    // them; so did the completed run's: the user's checkout and three pooled worktrees.
    assert!(!env.worktree(&format!("{run}--left")).exists());
    assert!(!env.worktree(&format!("{run}--right")).exists());
    assert_eq!(
        env.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        4
    );
    // The gitlinks are those of the base: the run changed no submodule.
    let links = |rev: &str| env.git(&["ls-tree", rev, "lib"]);
    assert_eq!(links(&format!("machine/{run}")), links("main"));
    assert!(step_toml(&env, &run, "01-read").contains("submodule `lib/nested` at"));
    // Nothing of the user's changed: not their config (no URL rewritten), not their checkout.
    let config_after = std::fs::read_to_string(env.common_dir().join("config")).expect("config");
    assert_eq!(config_before, config_after);
    assert_eq!(user_before, env.user_state());
    // The worktree's clone shares the user's object files (hardlinks) instead of copying them.
    // (Seen by the step: an object file of its clone has more than one link.)
    assert_eq!(show("shared.txt"), "shared\n", "no object file is shared");
    // Worktrees with submodules checked out are removed (git itself refuses to).
    let r = env.machine_ok(&["gc"]);
    assert_eq!(
        env.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1,
        "{r}"
    );
    assert_eq!(
        env.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
}

#[test]
fn a_submodule_never_initialised_is_a_warning_in_the_output_and_the_record() {
    let env = TestEnv::new();
    with_submodules(&env);
    env.git(&["submodule", "deinit", "-q", "-f", "lib"]);
    std::fs::remove_dir_all(env.common_dir().join("modules/lib")).expect("removed");
    env.workflow(
        "look",
        "version = 1\nname = \"look\"\n[[steps]]\nid = \"look\"\nrun = [\"sh\", \"-c\", \"ls -A lib | wc -l > count.txt\"]\n",
    );
    let r = env.machine_ok(&["run", "look"]);
    assert!(
        r.stderr
            .contains("warning: submodule `lib` is not initialised in your checkout"),
        "{r}"
    );
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:count.txt")])
            .trim(),
        "0"
    );
    let record = step_toml(&env, &run, "01-look");
    assert!(
        record.contains("warning: submodule `lib` is not initialised"),
        "{record}"
    );
}

#[test]
fn a_step_that_changes_a_submodule_fails_and_the_submodule_is_put_back() {
    let env = TestEnv::new();
    with_submodules(&env);
    env.workflow(
        "edit",
        "version = 1\nname = \"edit\"\n[[steps]]\nid = \"edit\"\nrun = [\"sh\", \"-c\", \"echo changed >> lib/nested/deep.txt && echo top > top.txt\"]\n",
    );
    let r = env.machine_code(1, &["run", "edit"]);
    assert!(
        r.stderr
            .contains("changed submodule `lib` (modified files)"),
        "{r}"
    );
    assert!(
        r.stderr.contains("does not commit inside submodules"),
        "{r}"
    );
    let run = env.last_run();
    let record = step_toml(&env, &run, "01-edit");
    assert!(record.contains("status = \"failed\""), "{record}");
    // The worktree is back at the checkpoint, submodules included, ready for a retry.
    let wt = env.worktree(&run);
    assert_eq!(
        std::fs::read_to_string(wt.join("lib/nested/deep.txt")).expect("read"),
        "deep text\n"
    );
    assert!(!wt.join("top.txt").exists());
    // The user's own clone never saw the change.
    assert_eq!(env.read("lib/nested/deep.txt"), "deep text\n");
}

/// A checkout with ignored `.env`, `config/local.toml` and `node_modules/`.
fn with_ignored_files(env: &TestEnv) {
    env.write(".gitignore", "/.env\nconfig/local.toml\nnode_modules/\n");
    env.write("config/app.toml", "tracked = true\n");
    env.git(&["add", ".gitignore", "config/app.toml"]);
    env.git(&["commit", "-q", "-m", "ignore rules"]);
    env.write(".env", "SECRET=1\n");
    env.write("config/local.toml", "local = true\n");
    env.write("node_modules/left-pad/index.js", "module.exports = 1;\n");
}

const USE_FILES: &str = r#"version = 1
name = "use"
[workspace]
copy = [".env", "config/local.toml"]
link = ["node_modules"]
[[steps]]
id = "use"
run = ["sh", "-c", "cat .env config/local.toml > seen.txt && ls node_modules > modules.txt && echo built > node_modules/built.txt && git status --porcelain > status.txt && if test -L node_modules; then echo link > islink.txt; fi && echo SECRET=2 > .env"]
"#;

#[test]
fn copy_and_link_bring_ignored_files_into_the_worktree_and_none_is_committed() {
    let env = TestEnv::new();
    with_ignored_files(&env);
    env.workflow("use", USE_FILES);
    let r = env.machine_ok(&["run", "use"]);
    let run = env.last_run();
    let show = |path: &str| env.git(&["show", &format!("machine/{run}:{path}")]);
    assert_eq!(show("seen.txt"), "SECRET=1\nlocal = true\n", "{r}");
    assert_eq!(show("modules.txt"), "left-pad\n");
    // git in the worktree sees neither the copies nor the link (only the step's own files).
    let status = show("status.txt");
    assert!(
        !status.contains(".env") && !status.contains("node_modules"),
        "{status}"
    );
    let tree = env.git(&["ls-tree", "-r", "--name-only", &format!("machine/{run}")]);
    for never in [".env", "config/local.toml", "node_modules"] {
        assert!(
            !tree.lines().any(|p| p.starts_with(never)),
            "{never} committed:\n{tree}"
        );
    }
    // The link is the user's folder: what the step wrote there is in the user's checkout.
    assert_eq!(
        show("islink.txt"),
        "link\n",
        "node_modules is a symlink there"
    );
    assert_eq!(env.read("node_modules/built.txt"), "built\n");
    // A copy is the worktree's own: the step's change to it is not the user's.
    assert_eq!(env.read(".env"), "SECRET=1\n");
    let record = step_toml(&env, &run, "01-use");
    assert!(record.contains("copied `.env` (1 file"), "{record}");
    assert!(record.contains("linked `node_modules` to"), "{record}");
    let exclude = std::fs::read_to_string(env.common_dir().join("info/exclude")).expect("exclude");
    assert!(exclude.lines().any(|l| l == "/node_modules"), "{exclude}");
}

#[test]
fn a_workspace_path_git_does_not_ignore_is_refused_before_anything_is_created() {
    let env = TestEnv::new();
    env.workflow(
        "bad",
        "version = 1\nname = \"bad\"\n[workspace]\ncopy = [\"README.md\"]\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n",
    );
    let r = env.machine_code(2, &["run", "bad"]);
    assert!(
        r.stderr
            .contains("`README.md` in [workspace] copy is not ignored by git"),
        "{r}"
    );
    assert!(r.stderr.contains("hint:"), "{r}");
    assert!(env.runs().is_empty());
}

#[test]
fn workspace_paths_outside_the_repository_are_refused_with_their_position() {
    let env = TestEnv::new();
    for (key, path) in [
        ("copy", "../secrets"),
        ("link", "/opt/cache"),
        ("setup_key", ".git/HEAD"),
    ] {
        let setup = if key == "setup_key" {
            "setup = [\"true\"]\n"
        } else {
            ""
        };
        env.workflow(
            "bad",
            &format!("version = 1\nname = \"bad\"\n[workspace]\n{setup}{key} = [\"{path}\"]\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n"),
        );
        let r = env.machine_code(2, &["validate", "bad"]);
        let line = if setup.is_empty() { 4 } else { 5 };
        assert!(
            r.stderr.contains(&format!("bad.toml:{line}:")),
            "{key}: {r}"
        );
        assert!(
            r.stderr
                .contains(&format!("`{key}` in [workspace] can't name `{path}`")),
            "{r}"
        );
        env.machine_code(2, &["run", "bad"]);
    }
    assert!(env.runs().is_empty());
}

const SET_UP: &str = r#"version = 1
name = "setup"
[workspace]
setup = ["sh", "-c", "echo ran >> \"$HOME/setups\"; echo installing packages; touch installed"]
setup_key = ["package-lock.json"]
[[steps]]
id = "build"
run = ["sh", "-c", "test -f installed && test -f \"$HOME/pass\" && echo ok > built.txt"]
[[steps]]
id = "after"
run = ["sh", "-c", "echo after > after.txt"]
"#;

#[test]
fn setup_runs_once_before_the_first_step_and_not_again_on_resume_with_the_same_key() {
    let env = TestEnv::new();
    env.write(".gitignore", "installed\n");
    env.write("package-lock.json", "{\"lockfileVersion\": 3}\n");
    env.git(&["add", ".gitignore", "package-lock.json"]);
    env.git(&["commit", "-q", "-m", "lock"]);
    env.workflow("setup", SET_UP);
    let r = env.machine_code(1, &["run", "setup"]);
    assert!(r.stderr.contains("setup `sh -c"), "{r}");
    let run = env.last_run();
    let setups = || std::fs::read_to_string(env.home.join("setups")).unwrap_or_default();
    assert_eq!(setups(), "ran\n");
    let log = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/01-build/setup.log"),
    ]);
    assert!(log.contains("installing packages"), "{log}");
    std::fs::write(env.home.join("pass"), "").expect("write");
    let r = env.machine_ok(&["resume", &run]);
    assert_eq!(
        setups(),
        "ran\n",
        "the key is unchanged: no second setup\n{r}"
    );
    assert!(
        r.stderr.contains("skipped: done in this worktree already"),
        "{r}"
    );
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:built.txt")]),
        "ok\n"
    );
    // The completed run's worktree went to the pool, its ignored files cleaned: taken again
    // (a rewind), it is set up again.
    env.machine_ok(&["rewind", &run, "after"]);
    env.machine_ok(&["resume", &run]);
    assert_eq!(setups(), "ran\nran\n");
}

#[test]
fn a_failing_setup_fails_the_first_step_with_its_exit_code_and_the_end_of_its_log() {
    let env = TestEnv::new();
    env.workflow(
        "broken",
        "version = 1\nname = \"broken\"\n[workspace]\nsetup = [\"sh\", \"-c\", \"echo resolving; echo 'npm ERR! missing lock' >&2; exit 3\"]\n[[steps]]\nid = \"build\"\nrun = [\"sh\", \"-c\", \"echo never > ran.txt\"]\n",
    );
    let r = env.machine_code(1, &["run", "broken"]);
    assert!(r.stderr.contains("failed (exit code 3)"), "{r}");
    let run = env.last_run();
    let record = step_toml(&env, &run, "01-build");
    assert!(record.contains("npm ERR! missing lock"), "{record}");
    assert!(
        !env.worktree(&run).join("ran.txt").exists(),
        "the step's program never ran"
    );
}

#[test]
fn git_config_adds_copies_and_gives_a_setup_when_the_workflow_has_none() {
    let env = TestEnv::new();
    with_ignored_files(&env);
    env.git(&["config", "machine.workspace.copy", ".env"]);
    env.git(&[
        "config",
        "machine.workspace.setup",
        "sh -c 'echo set up > installed.txt'",
    ]);
    env.write(".git/info/exclude", "installed.txt\n");
    env.workflow(
        "plain",
        "version = 1\nname = \"plain\"\n[[steps]]\nid = \"a\"\nrun = [\"sh\", \"-c\", \"cat .env installed.txt > seen.txt\"]\n",
    );
    let r = env.machine_ok(&["run", "plain"]);
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:seen.txt")]),
        "SECRET=1\nset up\n",
        "{r}"
    );
    env.git(&["config", "machine.workspace.link", "../outside"]);
    let r = env.machine_code(2, &["run", "plain"]);
    assert!(
        r.stderr
            .contains("git config machine.workspace.link can't name `../outside`"),
        "{r}"
    );
}

/// An LFS pointer as git-lfs writes it.
const POINTER: &str = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";

const READ_BLOB: &str = "version = 1\nname = \"blob\"\n[[steps]]\nid = \"read\"\nrun = [\"sh\", \"-c\", \"cat big.bin > seen.txt\"]\n";

#[test]
fn lfs_pointers_run_as_plain_files_when_no_lfs_filter_is_configured() {
    let env = TestEnv::new();
    env.write(
        ".gitattributes",
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    );
    env.write("big.bin", POINTER);
    env.git(&["add", ".gitattributes", "big.bin"]);
    env.git(&["commit", "-q", "-m", "lfs pointer"]);
    env.workflow("blob", READ_BLOB);
    let r = env.machine_ok(&["run", "blob"]);
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:seen.txt")]),
        POINTER,
        "{r}"
    );
    let blob = |rev: &str| env.git(&["rev-parse", &format!("{rev}:big.bin")]);
    assert_eq!(
        blob(&format!("machine/{run}")),
        blob("main"),
        "the pointer is committed as it was"
    );
}

#[test]
fn a_required_lfs_filter_whose_program_is_missing_is_refused_before_anything_is_created() {
    let env = TestEnv::new();
    env.write(
        ".gitattributes",
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    );
    env.write("big.bin", POINTER);
    env.git(&["add", ".gitattributes", "big.bin"]);
    env.git(&["commit", "-q", "-m", "lfs pointer"]);
    // As `git lfs install` configures it, with a program that is not installed anywhere.
    env.git(&["config", "filter.lfs.required", "true"]);
    env.git(&[
        "config",
        "filter.lfs.process",
        "git-lfs-not-installed filter-process",
    ]);
    env.workflow("blob", READ_BLOB);
    let r = env.machine_code(2, &["run", "blob"]);
    assert!(
        r.stderr
            .contains("`git-lfs-not-installed` is not installed"),
        "{r}"
    );
    assert!(r.stderr.contains("hint: install git-lfs"), "{r}");
    assert!(env.runs().is_empty());
    // The hint's way out works: the pointers are checked out as they are.
    let r = Run::from(
        env.machine_cmd(&["run", "blob"])
            .env(
                "GIT_CONFIG_PARAMETERS",
                "'filter.lfs.required'='false' 'filter.lfs.process'='' 'filter.lfs.smudge'=''",
            )
            .output()
            .expect("spawn"),
    );
    assert_eq!(r.code, 0, "{r}");
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:seen.txt")]),
        POINTER,
        "{r}"
    );
}

#[test]
fn an_lfs_file_whose_content_cannot_be_had_is_a_failure_with_a_hint_not_a_crash() {
    let env = TestEnv::new();
    env.write(
        ".gitattributes",
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    );
    env.write("big.bin", POINTER);
    env.git(&["add", ".gitattributes", "big.bin"]);
    env.git(&["commit", "-q", "-m", "lfs pointer"]);
    // A smudge that fails, as git-lfs does offline for an object it does not have.
    env.git(&["config", "filter.lfs.required", "true"]);
    env.git(&["config", "filter.lfs.smudge", "false"]);
    env.workflow("blob", READ_BLOB);
    let r = env.machine_code(1, &["run", "blob"]);
    assert!(r.stderr.contains("smudge filter lfs failed"), "{r}");
    assert!(r.stderr.contains("hint: get the LFS files first"), "{r}");
    // Once the content can be had (here: pointers accepted), the run goes on.
    env.git(&["config", "--unset", "filter.lfs.smudge"]);
    env.git(&["config", "filter.lfs.required", "false"]);
    let run = env.last_run();
    let r = env.machine_ok(&["resume", &run]);
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:seen.txt")]),
        POINTER,
        "{r}"
    );
}

/// Whether git-lfs runs here; prints why a test is skipped when not.
fn git_lfs(env: &TestEnv) -> bool {
    let mut cmd = Command::new("git");
    env.apply_env(&mut cmd);
    let ok = cmd
        .args(["lfs", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: git-lfs is not installed (`git lfs version` fails)");
    }
    ok
}

#[test]
fn lfs_files_are_smudged_from_the_local_store_and_skip_smudge_is_respected() {
    let env = TestEnv::new();
    if !git_lfs(&env) {
        return;
    }
    // A pooled worktree keeps the files as the run before smudged them (a two-way switch
    // writes only what differs): each run here gets a fresh checkout instead.
    env.git(&["config", "machine.pool.size", "0"]);
    env.git(&["lfs", "install", "--local"]);
    env.git(&["lfs", "track", "*.bin"]);
    env.write("big.bin", "real content\n");
    env.git(&["add", ".gitattributes", "big.bin"]);
    env.git(&["commit", "-q", "-m", "lfs file"]);
    // No remote exists: a fetch during the run would fail it.
    env.workflow("blob", READ_BLOB);
    let r = env.machine_ok(&["run", "blob"]);
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:seen.txt")]),
        "real content\n",
        "{r}"
    );
    let r = Run::from(
        env.machine_cmd(&["run", "blob"])
            .env("GIT_LFS_SKIP_SMUDGE", "1")
            .output()
            .expect("spawn"),
    );
    assert_eq!(r.code, 0, "{r}");
    let run = env.last_run();
    let seen = env.git(&["show", &format!("machine/{run}:seen.txt")]);
    assert!(
        seen.starts_with("version https://git-lfs.github.com/spec/v1"),
        "{seen}"
    );
}

use crate::common::Run;

#[test]
fn each_member_of_a_parallel_group_gets_the_workspace_and_its_own_setup() {
    let env = TestEnv::new();
    with_ignored_files(&env);
    env.write(".git/info/exclude", "installed\n");
    env.workflow(
        "group",
        r#"version = 1
name = "group"
[workspace]
copy = [".env"]
setup = ["sh", "-c", "echo ran >> \"$HOME/setups\"; pwd > installed"]
[[steps]]
id = "left"
group = "both"
run = ["sh", "-c", "cat .env installed > left.txt"]
[[steps]]
id = "right"
group = "both"
run = ["sh", "-c", "cat .env installed > right.txt"]
"#,
    );
    let r = env.machine_ok(&["run", "group"]);
    let run = env.last_run();
    let show = |path: &str| env.git(&["show", &format!("machine/{run}:{path}")]);
    assert!(show("left.txt").starts_with("SECRET=1\n"), "{r}");
    assert!(show("left.txt")
        .trim_end()
        .ends_with(&format!("{run}--left")));
    assert!(show("right.txt")
        .trim_end()
        .ends_with(&format!("{run}--right")));
    let setups = std::fs::read_to_string(env.home.join("setups")).expect("setups");
    assert_eq!(
        setups, "ran\nran\n",
        "once in each member's worktree, not in the run's"
    );
    let record = step_toml(&env, &run, "01-left");
    assert!(
        record.contains("copied `.env`") && record.contains("setup `sh -c"),
        "{record}"
    );
    assert!(show(&format!(".codemachine/runs/{run}/steps/01-left/setup.log")).is_empty());
}

#[test]
fn a_copy_the_runs_tree_does_not_ignore_is_removed_and_never_committed() {
    let env = TestEnv::new();
    // Ignored in the user's checkout only by an uncommitted rule: the run's tree does not know it.
    env.write(".gitignore", "/.env\n");
    env.write(".env", "SECRET=1\n");
    env.workflow(
        "leak",
        "version = 1\nname = \"leak\"\n[workspace]\ncopy = [\".env\"]\n[[steps]]\nid = \"a\"\nrun = [\"sh\", \"-c\", \"ls -A > files.txt\"]\n",
    );
    let r = env.machine_ok(&["run", "leak"]);
    assert!(r.stderr.contains("is not ignored by the run's tree"), "{r}");
    let run = env.last_run();
    let tree = env.git(&["ls-tree", "--name-only", &format!("machine/{run}")]);
    assert!(!tree.lines().any(|p| p == ".env"), "{tree}");
    let files = env.git(&["show", &format!("machine/{run}:files.txt")]);
    assert!(!files.lines().any(|p| p == ".env"), "{files}");
}

#[test]
fn the_live_view_shows_a_workspace_warning() {
    let env = TestEnv::new();
    env.write(".gitignore", "/.env\n");
    env.git(&["add", ".gitignore"]);
    env.git(&["commit", "-q", "-m", "ignore .env"]);
    env.workflow(
        "missing",
        "version = 1\nname = \"missing\"\n[workspace]\ncopy = [\".env\"]\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n",
    );
    let mut view = crate::pty::OnPty::spawn_sized(&env, &["run", "missing"], 160);
    let code = view.wait(std::time::Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", view.text());
    assert!(
        view.text()
            .contains("warning: `.env` ([workspace] copy) is not in your checkout; not copied"),
        "{}",
        view.text()
    );
}

/// A pooled worktree whose submodule a run populated is taken by a run on a newer base that
/// records another commit of it: the submodule is switched too, not left at the old commit.
#[test]
fn a_pooled_worktree_gets_the_submodule_commits_of_its_new_base() {
    let env = TestEnv::new();
    with_submodules(&env);
    let read = "version = 1\nname = \"look\"\n[[steps]]\nid = \"look\"\nrun = [\"sh\", \"-c\", \"cat lib/lib.txt > seen.txt\"]\n";
    env.workflow("look", read);
    env.machine_ok(&["run", "look"]);
    let first = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{first}:seen.txt")]),
        "lib text\n"
    );
    // The user moves the submodule on, in their checkout, and records it.
    let lib = env.repo.join("lib");
    std::fs::write(lib.join("lib.txt"), "lib text, version two\n").expect("write");
    git_in(&env, &lib, &["commit", "-q", "-am", "version two"]);
    env.git(&["add", "lib"]);
    env.git(&["commit", "-q", "-m", "lib version two"]);
    env.machine_ok(&["run", "look"]);
    let second = env.last_run();
    assert_ne!(first, second);
    assert_eq!(
        env.git(&["show", &format!("machine/{second}:seen.txt")]),
        "lib text, version two\n",
        "the pooled worktree's submodule was left at the old commit"
    );
}

/// The members' setups run side by side: each waits until all three have started (a setup
/// such as `npm ci` takes as long in every member's worktree). One after another, the first
/// would wait in vain and fail its member. With `--jobs 1` they take turns, and a setup that
/// fails fails only its own member.
#[test]
fn members_setups_run_side_by_side() {
    let env = TestEnv::new();
    let barrier = env.tmp.path().join("barrier");
    std::fs::create_dir_all(&barrier).expect("barrier dir");
    let setup = format!(
        "touch {b}/$(basename \"$PWD\"); n=0; while [ $(ls {b} | wc -l) -lt 3 ]; do n=$((n+1)); [ $n -gt 60 ] && exit 7; sleep 0.05; done",
        b = barrier.display()
    );
    let members: String = ["a", "b", "c"]
        .iter()
        .map(|m| format!("[[steps]]\nid = \"{m}\"\ngroup = \"g\"\nrun = [\"sh\", \"-c\", \"echo {m} > {m}.txt\"]\n"))
        .collect();
    env.workflow(
        "together",
        &format!("version = 1\nname = \"together\"\n[workspace]\nsetup = [\"sh\", \"-c\", {setup:?}]\n{members}"),
    );
    let r = env.machine_ok(&["run", "together", "--jobs", "3"]);
    let run = env.last_run();
    for m in ["a", "b", "c"] {
        assert_eq!(
            env.git(&["show", &format!("machine/{run}:{m}.txt")]),
            format!("{m}\n"),
            "{r}"
        );
        assert!(barrier.join(format!("{run}--{m}")).exists());
    }

    // One at a time, the barrier is never reached: every member fails with its setup's exit
    // code, none waits for another's.
    for f in std::fs::read_dir(&barrier).expect("barrier").flatten() {
        std::fs::remove_file(f.path()).expect("empty the barrier");
    }
    let r = env.machine_code(1, &["run", "together", "--jobs", "1"]);
    assert!(r.stderr.contains("setup `sh -c"), "{r}");
    assert!(
        r.stderr.contains("exit code 7") || r.stderr.contains("exited with 7"),
        "{r}"
    );
}
