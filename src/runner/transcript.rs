//! Agent transcripts kept with the run, so a session can be resumed on another clone.
//!
//! Some CLIs keep a session only in their own config folder, keyed by the working directory
//! (see [`crate::engine::Engine::transcript_path`]). After a step, its transcript is copied into
//! the step record (`transcript.jsonl`, gzip-compressed when large). Before a step continues a
//! session whose transcript the CLI does not have here — another machine, another clone, a
//! cleaned home — it is written back from the record.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::engine;
use crate::git::Worktree;
use crate::store::{self, RunId, StepRecord};

use crate::store::layout::TRANSCRIPT as NAME;

/// Copy the session's transcript, if the CLI keeps one here, into the record folder.
pub fn save(
    engine_name: &str,
    env: &[(String, String)],
    wt: &Worktree,
    session: &str,
    rec_dir: &Path,
) -> std::io::Result<bool> {
    let Some(src) =
        engine::by_name(engine_name, env).and_then(|e| e.transcript_path(env, &wt.path, session))
    else {
        return Ok(false);
    };
    if !src.is_file() {
        return Ok(false);
    }
    std::fs::create_dir_all(rec_dir)?;
    super::exec::keep_file(&src, rec_dir, NAME)?;
    Ok(true)
}

/// Put the transcript of `session` back where the CLI looks for it, from the newest record that
/// holds it. Returns where it was written, or `None` when nothing needed restoring.
pub fn restore(
    engine_name: &str,
    env: &[(String, String)],
    wt: &Worktree,
    run: &RunId,
    session: &str,
) -> std::io::Result<Option<PathBuf>> {
    let Some(target) =
        engine::by_name(engine_name, env).and_then(|e| e.transcript_path(env, &wt.path, session))
    else {
        return Ok(None);
    };
    if target.exists() {
        return Ok(None);
    }
    let steps = wt.path.join(run.dir()).join("steps");
    let Ok(entries) = std::fs::read_dir(&steps) else {
        return Ok(None);
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs.iter().rev() {
        let Ok(text) = std::fs::read(dir.join(store::layout::STEP)) else {
            continue;
        };
        let Ok(record) = store::upgrade::<StepRecord>(run, store::layout::STEP, &text) else {
            continue;
        };
        if record.session.as_deref() != Some(session) {
            continue;
        }
        let plain = dir.join(NAME);
        let packed = dir.join(format!("{NAME}.gz"));
        let bytes = if plain.is_file() {
            std::fs::read(&plain)?
        } else if packed.is_file() {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&packed)?).read_to_end(&mut out)?;
            out
        } else {
            continue;
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        return Ok(Some(target));
    }
    Ok(None)
}
