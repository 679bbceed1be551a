//! A run's events, appended as JSON lines under the common git dir as they happen, so that
//! `git machine watch` in another terminal (or after `--detach`) can follow the run. The log is
//! bounded: past [`EVENT_LOG_MAX`] bytes it starts a new file, the previous one kept as `.1`.

use std::fs::{File, OpenOptions};
use std::io::Write;

use crate::runner::{Event, Kind, Sink};
use crate::store::{Paths, RunId, EVENT_LOG_MAX};

/// Passes every event to `inner` and appends it to the run's event log.
pub struct Logged<'a> {
    inner: &'a mut dyn Sink,
    paths: Paths,
    file: Option<(RunId, File, u64)>,
    /// When activity was last logged: at most one line each [`ACTIVITY_EVERY`].
    activity_at: Option<std::time::Instant>,
}

/// Activity lines in the log, at most one this often.
const ACTIVITY_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl<'a> Logged<'a> {
    pub fn new(inner: &'a mut dyn Sink, paths: Paths) -> Logged<'a> {
        Logged {
            inner,
            paths,
            file: None,
            activity_at: None,
        }
    }

    /// Keep a running step's activity in the log now and then, for `watch`.
    fn log_activity(&mut self, member: Option<&str>, line: &str) {
        if self
            .activity_at
            .is_some_and(|t| t.elapsed() < ACTIVITY_EVERY)
        {
            return;
        }
        let (Some((run, _, _)), Some(text)) = (&self.file, super::live::activity(line)) else {
            return;
        };
        let event = Event {
            run: run.to_string(),
            time: crate::store::now_rfc3339(),
            kind: Kind::Activity {
                member: member.map(str::to_string),
                text,
            },
        };
        self.activity_at = Some(std::time::Instant::now());
        self.append(&event);
    }

    fn append(&mut self, event: &Event) {
        let run = RunId::from_stored(&event.run);
        if self.file.as_ref().is_none_or(|(r, _, _)| *r != run) {
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
        self.log_activity(None, line);
        self.inner.output(line);
    }

    fn member_output(&mut self, step: &str, line: &str) {
        self.log_activity(Some(step), line);
        self.inner.member_output(step, line);
    }
}
