//! `git machine watch`: follow a run that another process executes (another terminal, or
//! `--detach`), from the events it appends under the common git dir.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::time::Duration;

use clap::Args;

use super::error::CliResult;
use super::{find_run, Ctx};
use std::sync::atomic::Ordering;

use crate::runner::{Event, Kind, RunEnd, Sink};
use crate::signal::Controls;
use crate::store::{lock, Paths};

/// Follow a run executing in another process, until it ends
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Run id or a unique prefix of it (default: the most recent run)
    pub run: Option<String>,
    /// Report events as JSON lines on stdout (schema: docs/events.md)
    #[arg(long)]
    pub json: bool,
    /// One line per event instead of the live view, even on a terminal
    #[arg(long)]
    pub plain: bool,
}

pub fn run(ctx: &mut Ctx, args: &WatchArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (id, tip) = find_run(&repo, args.run.as_deref())?;
    let paths = Paths::new(&repo, &ctx.env);
    let Some(holder) = lock::live_holder(&paths.lock(&id)) else {
        ctx.ui.note(&format!("run {id} is not running"));
        return super::status::one(ctx, &repo, &id, tip, args.json);
    };
    // The live view's keys act on the run through signals to the process executing it; Ctrl-C
    // here only ends the watching.
    let remote = Controls::default();
    let rt = crate::engine::process::event_loop()?;
    let mailbox = (paths.mailbox(&id), repo.user_name());
    let forward = rt.spawn(forward_keys(remote.clone(), holder.clone(), mailbox));
    let mut view = super::View::new(
        rt.handle(),
        &mut ctx.ui,
        &remote,
        args.json,
        args.plain,
        false,
    );
    let watching = &ctx.controls.cancel;
    let end = rt.block_on(follow(
        &mut view,
        &paths.events(&id),
        || lock::holder_alive(&holder),
        || watching.load(Ordering::SeqCst),
    ))?;
    drop(view);
    forward.abort();
    drop(rt);
    if remote.controller.load(Ordering::SeqCst) && !lock::holder_alive(&holder) {
        // `c`: the run has stopped for the controller; the conversation is had here.
        let shown = super::Shown {
            plain: args.plain,
            json: args.json,
            ..Default::default()
        };
        let jobs = super::jobs(&repo, None)?;
        let end = super::with_runner(ctx, &repo, &shown, jobs, |runner| {
            if !runner.return_to_controller(&id)? {
                return Ok(None);
            }
            runner
                .resume(&id, crate::runner::ResumeOptions::default())
                .map(Some)
        })?;
        return match end {
            Some(end) => super::run_end(end, &id),
            None => Ok(()),
        };
    }
    if ctx.controls.cancel.load(Ordering::SeqCst) && end.is_none() {
        ctx.ui.note(&format!(
            "stopped watching; run {id} goes on (`git machine stop {id}` stops it)"
        ));
        return Ok(());
    }
    match end {
        Some(end) => super::run_end(end, &id),
        None => {
            ctx.ui.note(&format!(
                "run {id} stopped without a last word (its process was killed); `git machine resume {id}` continues it"
            ));
            super::run_end(RunEnd::Interrupted, &id)
        }
    }
}

/// Pass what the person asks with the view's keys to the process executing the run: `p` as
/// SIGUSR1, `s` as SIGUSR2, `q` as SIGTERM (the same as `git machine stop`), `m` as a message
/// in its mailbox and SIGURG (as `git machine say`). A task on the
/// watching command's event loop, ended by aborting it.
async fn forward_keys(
    remote: Controls,
    holder: lock::Holder,
    (mailbox, me): (std::path::PathBuf, String),
) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        for (flag, signal) in [
            (&remote.pause, crate::signal::PAUSE_SIGNAL),
            (&remote.skip, crate::signal::SKIP_SIGNAL),
            (&remote.cancel, libc::SIGTERM),
        ] {
            if flag.swap(false, Ordering::SeqCst) {
                let _ = lock::signal_holder_with(&holder, signal);
            }
        }
        // `m`: messages typed here go to the run's mailbox, as `git machine say` posts them.
        if remote.mail.swap(false, Ordering::SeqCst) {
            let said: Vec<String> = remote
                .said
                .lock()
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default();
            for text in said {
                let _ = crate::store::mail::post(
                    &mailbox,
                    &crate::store::mail::Message::now(&me, &text),
                );
            }
            let _ = lock::signal_holder_with(&holder, crate::signal::MAIL_SIGNAL);
        }
    }
}

/// Show the run's events from its log as they come, until `run_finished` (its end), until
/// the process running it is gone once its events are read, or until the watching is
/// `cancelled` (`None` for both).
async fn follow(
    sink: &mut dyn Sink,
    path: &std::path::Path,
    alive: impl Fn() -> bool,
    cancelled: impl Fn() -> bool,
) -> std::io::Result<Option<RunEnd>> {
    let mut offset = 0u64;
    let mut partial = String::new();
    loop {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size < offset {
            offset = 0; // a new file was started
        }
        let mut read_any = false;
        if size > offset {
            let mut file = std::fs::File::open(path)?;
            file.seek(SeekFrom::Start(offset))?;
            // What the log holds now, not what is written while it is read: a run that logs
            // without pause would keep this loop reading for ever.
            let mut reader = BufReader::new(std::io::Read::take(file, size - offset));
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                offset += line.len() as u64;
                partial.push_str(&line);
                line.clear();
                if !partial.ends_with('\n') {
                    continue;
                }
                read_any = true;
                if let Ok(event) = serde_json::from_str::<Event>(partial.trim_end()) {
                    let end = finished(&event);
                    sink.emit(event);
                    if end.is_some() {
                        return Ok(end);
                    }
                }
                partial.clear();
            }
        }
        if read_any {
            // Let the view's other tasks (its keys: a Ctrl-C typed here) run between batches,
            // or a run that logs without pause would keep them waiting for ever.
            tokio::task::yield_now().await;
            if cancelled() {
                return Ok(None);
            }
            continue;
        }
        if !alive() || cancelled() {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn finished(event: &Event) -> Option<RunEnd> {
    let Kind::RunFinished { state, .. } = &event.kind else {
        return None;
    };
    Some(match state.as_str() {
        "completed" => RunEnd::Completed,
        "paused" => RunEnd::Paused,
        "conflict" => RunEnd::Conflict,
        "interrupted" => RunEnd::Interrupted,
        _ => RunEnd::Failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    struct Count(usize);
    impl Sink for Count {
        fn emit(&mut self, _event: Event) {
            self.0 += 1;
        }
    }

    /// A run that logs without pause must not keep the view's key reader (a task on the same
    /// event loop) from seeing a Ctrl-C: following yields between batches and stops when
    /// told to.
    #[test]
    fn following_a_flood_of_events_still_hears_a_cancel() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "").expect("log");
        let flooding = Arc::new(AtomicBool::new(true));
        let writer = {
            let (path, flooding) = (path.clone(), flooding.clone());
            std::thread::spawn(move || {
                let mut log = std::fs::OpenOptions::new()
                    .append(true)
                    .open(path)
                    .expect("open the log");
                while flooding.load(Ordering::SeqCst) {
                    let _ = std::io::Write::write_all(&mut log, b"{\"not\": \"an event\"}\n");
                }
            })
        };
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = crate::engine::process::event_loop().expect("event loop");
            let cancel = Arc::new(AtomicBool::new(false));
            let keys = cancel.clone();
            // The key reader's stand-in: it sets the flag once it gets to run.
            rt.spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                keys.store(true, Ordering::SeqCst);
            });
            let end = rt.block_on(follow(
                &mut Count(0),
                &path,
                || true,
                || cancel.load(Ordering::SeqCst),
            ));
            let _ = done.send(end.map(|e| e.is_none()).unwrap_or(false));
        });
        let stopped = ended.recv_timeout(Duration::from_secs(20));
        flooding.store(false, Ordering::SeqCst);
        writer.join().expect("writer");
        assert_eq!(stopped, Ok(true), "following never heard the cancel");
    }
}
