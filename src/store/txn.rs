//! The run transaction: the only code that writes a run's commits or moves its refs.
//!
//! One transition of a run is one commit (its code tree plus git machine's files under
//! `.codemachine/runs/<run>/`) and the run branch moved to it, together with any side refs
//! (an attempt kept, a member published, an attic entry) in one compare-and-swap: either all
//! of them move or none does. The whole of it runs inside [`crate::signal::critical`], so a
//! second Ctrl-C waits for it instead of cutting it in half.

use crate::git::{Oid, RefName, RefUpdate, Repo};

use super::{RunId, StoreError};

/// Trailer keys of run commits (spelled here and nowhere else).
pub mod trailer {
    pub const RUN: &str = "Machine-Run";
    pub const STEP: &str = "Machine-Step";
    pub const RECORD: &str = "Machine-Record";
    pub const RECORDS: &str = "Machine-Records";
    pub const ENGINE: &str = "Machine-Engine";
    pub const SESSION: &str = "Machine-Session";
    pub const STATUS: &str = "Machine-Status";
    pub const GROUP: &str = "Machine-Group";
    pub const MEMBER: &str = "Machine-Member";
    pub const REVIEW: &str = "Machine-Review";
    pub const ATTEMPT: &str = "Machine-Attempt";
    pub const WORKFLOW: &str = "Machine-Workflow";
    /// On a commit `apply` made: the run commit it was copied from.
    pub const APPLIED_FROM: &str = "Machine-Applied-From";
}

/// Author of commits git machine makes for an engine (`None`: the run itself).
pub fn author(engine: Option<&str>) -> (String, String) {
    let name = match engine {
        Some(e) => format!("git machine ({e})"),
        None => "git machine".to_string(),
    };
    (name, "git-machine@localhost".to_string())
}

/// A commit message: the subject, a blank line, the trailers. The subject is often a line a
/// step's program printed: control characters (a NUL, which no commit message can hold, an
/// escape sequence, a line break) become spaces, so the message is one readable line.
pub fn message(subject: &str, trailers: &[(&str, &str)]) -> String {
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let mut m = format!("{}\n\n", one_line(subject));
    for (k, v) in trailers {
        m.push_str(&format!("{k}: {}\n", one_line(v)));
    }
    m
}

/// One transition, ready to publish.
pub struct Commit {
    /// The tree to commit, before `files` are written into it.
    pub tree: Oid,
    /// git machine's files (checkpoint, step records), written over `tree`.
    pub files: Vec<(String, Vec<u8>)>,
    /// Parents, first-parent first.
    pub parents: Vec<Oid>,
    pub message: String,
    /// `None`: the user's identity (a review), else git machine's for an engine.
    pub author: Option<(String, String)>,
    /// Other refs moved in the same compare-and-swap.
    pub side_refs: Vec<RefUpdate>,
}

/// Commit and move the run branch from `expected` to it, with the side refs, atomically.
pub fn publish(repo: &Repo, run: &RunId, expected: Oid, c: Commit) -> Result<Oid, StoreError> {
    publish_from(repo, run, Some(expected), c)
}

/// A commit on top of `tip` with the same code: only git machine's `files` change (a
/// checkpoint, a failure record, a reloaded workflow).
pub fn on_top(
    repo: &Repo,
    run: &RunId,
    tip: Oid,
    files: Vec<(String, Vec<u8>)>,
    message: String,
    author: Option<(String, String)>,
    side_refs: Vec<RefUpdate>,
) -> Result<Oid, StoreError> {
    let tree = repo.tree_of(tip)?;
    publish(
        repo,
        run,
        tip,
        Commit {
            tree,
            files,
            parents: vec![tip],
            message,
            author,
            side_refs,
        },
    )
}

/// Create the run branch at its start commit; refused if the branch exists.
pub fn start(repo: &Repo, run: &RunId, c: Commit) -> Result<Oid, StoreError> {
    publish_from(repo, run, None, c)
}

fn publish_from(
    repo: &Repo,
    run: &RunId,
    expected: Option<Oid>,
    c: Commit,
) -> Result<Oid, StoreError> {
    let _critical = crate::signal::critical();
    let tree = if c.files.is_empty() {
        c.tree
    } else {
        repo.tree_with_files(c.tree, &c.files)?
    };
    let author = c.author.as_ref().map(|(n, e)| (n.as_str(), e.as_str()));
    let commit = repo.commit(tree, &c.parents, &c.message, author)?;
    crate::env::crash::point("committed");
    let mut updates = vec![RefUpdate {
        name: run.branch(),
        old: expected,
        new: Some(commit),
    }];
    updates.extend(c.side_refs);
    let subject = c.message.lines().next().unwrap_or_default();
    repo.update_refs(&updates, &format!("git machine: {subject}"))?;
    crate::env::crash::point("published");
    Ok(commit)
}

/// Move refs of a run without a new commit (rewind, undo, rm, a kept attempt), atomically.
pub fn move_refs(repo: &Repo, updates: &[RefUpdate], reflog: &str) -> Result<(), StoreError> {
    let _critical = crate::signal::critical();
    repo.update_refs(updates, reflog)?;
    crate::env::crash::point("refs-moved");
    Ok(())
}

/// A side ref set to `new` from whatever it points at now.
pub fn side_ref(repo: &Repo, name: RefName, new: Oid) -> RefUpdate {
    let old = repo.ref_target(&name);
    RefUpdate {
        name,
        old,
        new: Some(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a step printing binary output had a NUL in its summary, and libgit2 refused
    /// the commit message (an internal error, exit 101).
    #[test]
    fn a_subject_with_control_characters_becomes_one_clean_line() {
        let m = message("bad: x\0y\u{1b}[31m\nz", &[("Machine-Run", "r\0")]);
        assert_eq!(m, "bad: x y [31m z\n\nMachine-Run: r \n");
    }
}
