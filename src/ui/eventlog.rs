//! A run's events, appended as JSON lines under the common git dir as they happen, so that
//! `git machine watch` in another terminal (or after `--detach`) can follow the run. The log is
//! bounded: past [`EVENT_LOG_MAX`] bytes it starts a new file, the previous one kept as `.1`.

use std::fs::{File, OpenOptions};
use std::io::Write;

use crate::runner::{Event, Sink};
use crate::store::{Paths, RunId, EVENT_LOG_MAX};

/// Passes every event to `inner` and appends it to the run's event log.
pub struct Logged<'a> {
    inner: &'a mut dyn Sink,
    paths: Paths,
    file: Option<(RunId, File, u64)>,
}

impl<'a> Logged<'a> {
    pub fn new(inner: &'a mut dyn Sink, paths: Paths) -> Logged<'a> {
        Logged {
            inner,
            paths,
            file: None,
        }
    }

    fn append(&mut self, event: &Event) {
        let run = RunId::from_stored(&event.run);
        if self.file.as_ref().map_or(true, |(r, _, _)| *r != run) {
            let path = self.paths.events(&run);
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let Ok(file) = OpenOptions::new().create(true).append(true).open(&path) else {
                return;
            };
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some((run.clone(), file, size));
        }
        let Some((run, file, size)) = self.file.as_mut() else {
            return;
        };
        let line = serde_json::to_string(event).expect("events are plain data") + "\n";
        if *size + line.len() as u64 > EVENT_LOG_MAX {
            let path = self.paths.events(run);
            let _ = std::fs::rename(&path, path.with_extension("jsonl.1"));
            match File::create(&path) {
                Ok(f) => {
                    *file = f;
                    *size = 0;
                }
                Err(_) => return,
            }
        }
        // The log is for watchers; a full disk shows in the run itself, not here.
        if file.write_all(line.as_bytes()).is_ok() {
            *size += line.len() as u64;
        }
    }
}

impl Sink for Logged<'_> {
    fn emit(&mut self, event: Event) {
        self.append(&event);
        self.inner.emit(event);
    }

    fn output(&mut self, line: &str) {
        self.inner.output(line);
    }

    fn member_output(&mut self, step: &str, line: &str) {
        self.inner.member_output(step, line);
    }
}
