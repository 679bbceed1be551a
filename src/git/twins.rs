//! What the git module's twin tests share: a scratch repository with files committed, worktrees
//! of it at that commit, and a script run in each of them alike.

use std::path::{Path, PathBuf};

use super::{init_scratch_repo, run_git, GitEnv, Oid, Repo};

/// A scratch repository (`main`) whose one commit past the first, `base`, holds `files`.
pub(super) struct Scratch {
    pub tmp: tempfile::TempDir,
    pub main: PathBuf,
    pub base: Oid,
}

impl Scratch {
    /// With `config` set in the repository before `files` are committed (filters apply).
    pub fn new(config: &[(&str, &str)], files: &[(&str, &str)]) -> Scratch {
        let tmp = tempfile::tempdir().expect("tmp");
        let main = tmp.path().join("main");
        std::fs::create_dir(&main).expect("mkdir");
        init_scratch_repo(&main).expect("repo");
        for (key, value) in config {
            run_git(&main, ["config", key, value]).expect("config");
        }
        for (path, text) in files {
            let full = main.join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("dirs");
            std::fs::write(full, text).expect("write");
        }
        run_git(&main, ["add", "-A"]).expect("add");
        run_git(&main, ["commit", "-q", "-m", "files"]).expect("commit");
        let owner = Repo::open(&main, &GitEnv::default()).expect("open");
        let base = owner.head_commit().expect("head");
        Scratch { tmp, main, base }
    }

    /// A worktree at `base` named `name`, beside `main`.
    pub fn worktree(&self, name: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        let owner = Repo::open(&self.main, &GitEnv::default()).expect("open");
        owner
            .worktree_add_detached(&path, self.base)
            .expect("worktree add");
        path
    }
}

/// Run `script` (sh) in each of `dirs`; it must succeed in each. Commits it makes carry a
/// fixed date, so the same script makes the same commit in each (a nested repository's
/// commit is its gitlink) whatever second each ran in.
pub(super) fn run_in_each(dirs: &[&Path], script: &str) {
    for dir in dirs {
        let ok = std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_DATE", "2026-11-30T12:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-11-30T12:00:00Z")
            .status()
            .expect("sh");
        assert!(ok.success(), "{script}");
    }
}
