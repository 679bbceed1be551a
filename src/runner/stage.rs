//! Staging a worktree for one of the run's commits (a step, a member, a resolution, a review,
//! an attempt kept aside): everything git does not ignore, minus the files [`Rules`] leave out
//! — the secret files of `store::secrets` that the run's workflow does not allow
//! (`commit_secrets`), and those `runner::filter` withholds (over `machine.maxFileSize`,
//! symlinks out of the worktree). Every commit git machine makes from a worktree stages
//! through here, so none of them reaches any ref.

use super::filter::{self, Candidate, Limits};
use super::{Kind, Runner};
use crate::error::Result;
use crate::git::{Oid, Repo, Worktree};
use crate::store::secrets::{LeftOut, Secrets};
use crate::store::{self, layout, RunId, StepRecord};
use crate::workflow::StepId;

/// What was staged: the tree, and the files left out of it.
pub struct Stage {
    pub tree: Oid,
    pub left_out: Vec<LeftOut>,
}

impl Stage {
    /// The left-out paths, for [`Worktree::reset_keeping`].
    pub fn paths(left_out: &[LeftOut]) -> Vec<String> {
        left_out.iter().map(|l| l.path.clone()).collect()
    }
}

/// What the run's commits leave out of a worktree.
pub struct Rules {
    pub secrets: Secrets,
    pub limits: Limits,
}

impl Rules {
    /// Why the file at `path` in `wt` stays out of commits, if it does.
    pub fn why(&self, wt: &Worktree, path: &str) -> Option<String> {
        let read = || std::fs::read(wt.path.join(path)).unwrap_or_default();
        self.secrets.reason(path, read).or_else(|| {
            let file = Candidate::at(&wt.path, path)?;
            filter::withhold(&self.limits, &wt.path, &file)
        })
    }
}

/// Stage `wt` (`force`: paths added even when ignored), leaving out what `rules` name unless
/// commit `base` (where the step started) holds it already.
pub fn stage(wt: &Worktree, force: &[&str], rules: &Rules, base: Oid) -> Result<Stage> {
    let judge = |p: &str| rules.why(wt, p).is_some();
    let staged = wt.stage_all(force, &judge, base)?;
    let left_out = staged
        .left_out
        .into_iter()
        .filter_map(|path| {
            let reason = rules.why(wt, &path)?;
            Some(LeftOut { path, reason })
        })
        .collect();
    Ok(Stage {
        tree: staged.tree,
        left_out,
    })
}

/// Make `wt` exactly `commit` (as [`Worktree::reset_hard`]), keeping the untracked files
/// `rules` leave out where they are: left out of every commit, they exist only there.
pub fn reset(wt: &Worktree, commit: Oid, rules: &Rules) -> Result {
    let keep: Vec<String> = wt
        .untracked()?
        .into_iter()
        .filter(|p| rules.why(wt, p).is_some())
        .collect();
    wt.reset_keeping(commit, &keep)?;
    Ok(())
}

/// Stage a step's work together with its record, already written into the worktree
/// (`files`: the record's files as the commit will hold them). When secret files are left out,
/// the record lists them (`left_out`): it is written again, in `files` too, and staged again.
pub fn stage_step(
    wt: &Worktree,
    id: &RunId,
    rec: &str,
    record: &mut StepRecord,
    files: &mut [(String, Vec<u8>)],
    (rules, base): (&Rules, Oid),
) -> Result<Stage> {
    // The run's folder, and the step's new record in it: git machine's own files, committed
    // whatever the user's ignore rules say of their names (`output.log` under `*.log`).
    let force = [id.dir(), store::record_dir(id, rec)];
    let force: Vec<&str> = force.iter().map(String::as_str).collect();
    let staged = stage(wt, &force, rules, base)?;
    if staged.left_out.is_empty() {
        return Ok(staged);
    }
    record.left_out = staged.left_out.clone();
    let path = format!("{}/{}", store::record_dir(id, rec), layout::STEP);
    let bytes = store::to_toml(&*record).into_bytes();
    std::fs::write(wt.path.join(&path), &bytes)?;
    if let Some(entry) = files.iter_mut().find(|(p, _)| *p == path) {
        entry.1 = bytes;
    }
    Ok(Stage {
        tree: wt.stage_one(&path, base)?,
        left_out: staged.left_out,
    })
}

/// Whether the step's program committed one of the left-out files itself (in the commits
/// between its start and `head`): then those commits are not kept, the step's commit takes
/// their place on top of where the step started, so the secret reaches no ref.
pub fn committed_by_program(repo: &Repo, head: Oid, left_out: &[LeftOut]) -> Result<bool> {
    let tree = repo.tree_of(head)?;
    for l in left_out {
        if repo.has_path(tree, &l.path)? {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Runner<'_> {
    /// What the run's commits leave out, as of run commit `commit`: the secret files its
    /// workflow allows (none, the strict default, when that commit holds no readable run) and
    /// the repository's limits (`machine.maxFileSize`).
    ///
    /// The workflow is parsed once for each version of it the run holds (steps follow each
    /// other on one, so most steps reuse the last one's rules).
    pub(super) fn rules_at(&self, id: &RunId, commit: Oid) -> Result<Rules> {
        let source = format!("{}/{}", id.dir(), store::layout::WORKFLOW);
        let version = self.repo.blob_id_at(commit, &source)?;
        let known = self.secrets_seen.borrow().clone();
        let secrets = match (version, known) {
            (Some(v), Some((seen, secrets))) if v == seen => secrets,
            _ => {
                let secrets = store::read_run_at(self.repo, id, commit)
                    .ok()
                    .and_then(|info| info.workflow().ok())
                    .map(|wf| Secrets::new(&wf.commit_secrets))
                    .unwrap_or_default();
                *self.secrets_seen.borrow_mut() = version.map(|v| (v, secrets.clone()));
                secrets
            }
        };
        Ok(Rules {
            secrets,
            limits: Limits::of(self.repo)?,
        })
    }

    /// Tell that files were left out of a commit (of `step`, when it is a step's).
    pub(super) fn report_left_out(&mut self, id: &RunId, step: Option<&StepId>, left: &[LeftOut]) {
        if left.is_empty() {
            return;
        }
        self.emit(
            id,
            Kind::LeftOut {
                step: step.cloned(),
                files: left.to_vec(),
            },
        );
    }
}
