//! Messages from the person to a running step: `git machine say` posts them to the run's
//! mailbox under the common git dir and signals the process executing the run, which takes
//! them all at once. Posting appends one JSON line with one write in append mode; taking
//! renames the mailbox away first, so a message posted meanwhile goes to a new mailbox and is
//! taken next time, never lost or taken twice.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One message: who said what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub by: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub text: String,
}

impl Message {
    pub fn now(by: &str, text: &str) -> Message {
        Message {
            by: by.to_string(),
            at: super::now_rfc3339(),
            text: text.to_string(),
        }
    }
}

/// Append `message` to the file at `path` (a mailbox, or a step's delivered messages).
pub fn post(path: &Path, message: &Message) -> Result {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_string(message).expect("a message serializes");
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write of one line, in append mode: lines of concurrent posters never interleave.
    file.write_all(line.as_bytes())?;
    Ok(())
}

/// Every message in the file at `path`, in order; a line that does not read is an error.
pub fn read(path: &Path) -> Result<Vec<Message>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::failed(format!(
                    "{} line {}: not a message: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Take every message waiting in the mailbox at `path`, leaving it empty.
pub fn take(path: &Path) -> Result<Vec<Message>> {
    let taken = path.with_extension("taking");
    match std::fs::rename(path, &taken) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    }
    let messages = read(&taken)?;
    std::fs::remove_file(&taken)?;
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_once_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mail").join("r.jsonl");
        assert!(take(&path).expect("an empty mailbox").is_empty());
        post(&path, &Message::now("Ada", "use sqlite")).expect("post");
        post(&path, &Message::now("Ada", "and tests")).expect("post");
        let taken = take(&path).expect("take");
        let texts: Vec<&str> = taken.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["use sqlite", "and tests"]);
        assert!(take(&path).expect("taken already").is_empty());
    }

    #[test]
    fn a_damaged_line_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, "garbage\n").expect("write");
        assert!(read(&path).is_err());
    }
}
