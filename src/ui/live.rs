//! The live view: when stderr is a terminal, a run is shown as a table of its steps, redrawn in
//! place at most ten times a second — state, elapsed time, engine, summary or the running
//! step's latest activity — with what needs the person (paused, conflict) on top, and keys:
//! `p` pause after this step, `s` skip this step, `l` the running step's recent output,
//! ↑/↓ (or k/j) select a step and `d` show the files it changed, `q`/Esc stop now
//! (resumable). Ctrl-C stays a signal: once graceful, twice hard.
//!
//! The terminal is put in non-canonical, no-echo mode (signals kept) while the view runs, the
//! cursor hidden; both are restored when the view ends, and by the signal handler if a second
//! Ctrl-C ends the process (see [`crate::signal`]). When the run ends, the last frame — a clean
//! summary — stays on the terminal.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use console::{measure_text_width, truncate_str, Term};

use super::{elapsed, Ui};
use crate::runner::{Event, Kind, Sink};
use crate::signal::Controls;

/// A key as [`keys`] reads it: a byte typed, or an arrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Byte(u8),
    Up,
    Down,
}

/// Frames per second, at most.
const FRAME: Duration = Duration::from_millis(100);
/// Output lines of the running step kept for `l`.
const RECENT: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Done,
    Failed,
    Skipped,
    Interrupted,
}

struct Row {
    step: String,
    /// Parallel group, for members.
    group: Option<String>,
    state: State,
    started: Instant,
    took: Option<Duration>,
    engine: String,
    pass: Option<u32>,
    text: String,
    /// Files the step's commit changed: (path, added, removed).
    files: Vec<(String, usize, usize)>,
}

/// What the view shows; shared with the drawing thread.
#[derive(Default)]
struct Screen {
    run: String,
    workflow: String,
    rows: Vec<Row>,
    /// What needs the person (paused, conflict) or ended the run.
    attention: Option<String>,
    notes: VecDeque<String>,
    recent: VecDeque<String>,
    show_recent: bool,
    /// The row `d` shows the files of (default: the last committed one).
    selected: Option<usize>,
    show_files: bool,
    finished: Option<String>,
    dirty: bool,
    color: bool,
    /// The lines on the terminal now, to redraw only what changed.
    drawn: Vec<String>,
    /// The terminal belongs to someone else (an interactive step's program, the controller's
    /// conversation): nothing is drawn and no key is read.
    suspended: bool,
    /// Turns of a reopened conversation still to be shown again.
    replay: usize,
    /// A message to the running step being typed (`m`), as bytes typed so far.
    composing: Option<Vec<u8>>,
    /// The run's workflow has a controller to go back to (`c`).
    has_controller: bool,
}

pub struct Live {
    screen: Arc<Mutex<Screen>>,
    stop: Arc<AtomicBool>,
}

impl Live {
    /// Start the view on stderr, with keys read from stdin when it is a terminal: its redraw
    /// timer and key reader are tasks on the command's event loop `rt`.
    pub fn start(rt: &tokio::runtime::Handle, ui: &Ui, controls: &Controls) -> Live {
        let screen = Arc::new(Mutex::new(Screen {
            color: ui.color,
            ..Screen::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let _ = Term::stderr().hide_cursor();
        rt.spawn(draw_task(Arc::clone(&screen), Arc::clone(&stop)));
        if crate::signal::keys_mode_on() {
            let (s, st, c) = (Arc::clone(&screen), Arc::clone(&stop), controls.clone());
            rt.spawn(key_task(s, st, c));
        }
        Live { screen, stop }
    }

    fn with(&self, f: impl FnOnce(&mut Screen)) {
        let mut s = self
            .screen
            .lock()
            .expect("no task panics holding the screen");
        f(&mut s);
        s.dirty = true;
    }
}

impl Drop for Live {
    /// The last frame, drawn here whether or not the loop turns again: a clean summary.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut s) = self.screen.lock() {
            s.suspended = false;
        }
        draw(&self.screen, true);
        let _ = Term::stderr().show_cursor();
        crate::signal::keys_mode_off();
    }
}

impl Live {
    /// The view steps aside: its frame stays as it is, the terminal is someone else's.
    fn suspend(&mut self, line: &str) {
        draw(&self.screen, true);
        self.with(|s| {
            s.suspended = true;
            s.drawn.clear();
        });
        let term = Term::stderr();
        let _ = term.show_cursor();
        let _ = term.write_line(line);
    }

    /// The view is back, drawn afresh below whatever the other party left on the screen.
    fn resume(&mut self) {
        self.with(|s| {
            s.suspended = false;
            s.drawn.clear();
        });
        let _ = Term::stderr().hide_cursor();
    }

    /// A turn of the conversation, printed while the view is aside: the agent's always, the
    /// person's only when a reopened conversation shows its earlier turns.
    fn turn(&mut self, who: &str, text: &str) {
        let (color, replayed) = {
            let mut s = self
                .screen
                .lock()
                .expect("no task panics holding the screen");
            let replayed = s.replay > 0;
            s.replay = s.replay.saturating_sub(1);
            (s.color, replayed)
        };
        let style = |s: console::Style| s.force_styling(color);
        let line = if who == crate::runner::controller::AGENT {
            format!(
                "{} {text}",
                style(console::Style::new().cyan()).apply_to("controller ›")
            )
        } else if replayed {
            style(console::Style::new().dim())
                .apply_to(format!("{who} › {text}"))
                .to_string()
        } else {
            return;
        };
        let _ = Term::stderr().write_line(&line);
    }
}

impl Sink for Live {
    fn emit(&mut self, event: Event) {
        match &event.kind {
            Kind::TerminalHandedOver { step, engine } => {
                let line = format!("▶ the terminal is yours: `{step}` runs {engine}'s own interface; leave it to go on");
                self.with(|s| s.apply(event));
                self.suspend(&line);
            }
            Kind::ConversationStarted {
                engine,
                earlier_turns,
                ..
            } => {
                let mut line = format!(
                    "controller with {engine}: type your answers; an empty line when you are done"
                );
                if *earlier_turns > 0 {
                    line.push_str(&format!(" (reopened: {earlier_turns} turns so far)"));
                }
                let (replay, run) = (*earlier_turns, event.run.clone());
                self.with(|s| {
                    s.replay = replay;
                    s.run = run;
                });
                self.suspend(&line);
            }
            Kind::TerminalTakenBack { .. } | Kind::ConversationEnded { .. } => self.resume(),
            Kind::Turn { who, text } => {
                let (who, text) = (who.clone(), text.clone());
                self.turn(&who, &text);
            }
            _ => self.with(|s| s.apply(event)),
        }
    }

    fn member_output(&mut self, step: &str, line: &str) {
        let Some(text) = activity(line) else {
            return;
        };
        self.with(|s| {
            if let Some(row) = s.row(step).filter(|r| r.state == State::Running) {
                row.text = text;
            }
        });
    }

    fn output(&mut self, line: &str) {
        let text = activity(line);
        self.with(|s| {
            if let Some(text) = text {
                if let Some(row) = s.rows.iter_mut().rev().find(|r| r.state == State::Running) {
                    row.text = text.clone();
                }
                s.recent.push_back(text);
                while s.recent.len() > RECENT {
                    s.recent.pop_front();
                }
            }
        });
    }
}

/// Tokens and cost an engine reported, short: `  12.3k tok $0.04`.
fn spent(usage: &std::collections::BTreeMap<String, u64>) -> String {
    let tokens: u64 = usage
        .iter()
        .filter(|(k, _)| k.ends_with("_tokens"))
        .map(|(_, v)| v)
        .sum();
    let mut out = String::new();
    if tokens > 0 {
        out.push_str(&if tokens >= 1000 {
            format!("  {:.1}k tok", tokens as f64 / 1000.0)
        } else {
            format!("  {tokens} tok")
        });
    }
    if let Some(micros) = usage.get("cost_usd_micros").filter(|m| **m > 0) {
        out.push_str(&format!(" ${:.2}", *micros as f64 / 1e6));
    }
    out
}

/// The running agent's latest activity, in words: a tool call or a line of its text. Agent
/// CLIs print JSON events; the common fields of their tool calls and messages are read.
pub fn activity(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    // Pieces of a JSON document printed over many lines (`"key": …`, `}`) are not words.
    if line.starts_with(['"', '}', ']']) {
        return None;
    }
    if !line.starts_with('{') {
        return Some(line.to_string());
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let mut found = None;
    find_activity(&v, &mut found, 0);
    found
}

/// A tool call as the agent CLIs print it: Claude's `name` + `input`, Gemini's `tool_name` +
/// `parameters`, OpenCode's `tool` + `state.input`.
fn tool_call(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Option<(&str, &serde_json::Value)> {
    let name = ["name", "tool_name", "tool"]
        .iter()
        .find_map(|k| map.get(*k).and_then(|x| x.as_str()))?;
    let input = map
        .get("input")
        .or_else(|| map.get("parameters"))
        .or_else(|| map.get("state").and_then(|st| st.get("input")))?;
    Some((name, input))
}

fn find_activity(v: &serde_json::Value, found: &mut Option<String>, depth: usize) {
    if depth > 6 || found.is_some() {
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            let s = |k: &str| map.get(k).and_then(|x| x.as_str());
            if let Some(cmd) = s("command") {
                *found = Some(format!("run {cmd}"));
            } else if let Some((name, input)) = tool_call(map) {
                let target = ["file_path", "filePath", "path", "command", "pattern"]
                    .iter()
                    .find_map(|k| input.get(*k).and_then(|x| x.as_str()));
                *found = Some(match target {
                    Some(t) => format!("{} {t}", name.to_lowercase()),
                    None => name.to_lowercase(),
                });
            } else if let Some(text) = s("text").filter(|t| !t.trim().is_empty()) {
                *found = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string);
            }
            for value in map.values() {
                find_activity(value, found, depth + 1);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items.iter().rev() {
                find_activity(item, found, depth + 1);
            }
        }
        _ => {}
    }
}

impl Screen {
    fn row(&mut self, step: &str) -> Option<&mut Row> {
        self.rows.iter_mut().rev().find(|r| r.step == step)
    }

    fn start(&mut self, step: String, group: Option<String>, engine: String, pass: Option<u32>) {
        self.rows.push(Row {
            step,
            group,
            state: State::Running,
            started: Instant::now(),
            took: None,
            engine,
            pass,
            text: String::new(),
            files: Vec::new(),
        });
        self.recent.clear();
    }

    fn end(&mut self, step: &str, state: State, ms: Option<u64>, text: String) {
        if let Some(r) = self.row(step) {
            r.state = state;
            r.took = Some(ms.map_or_else(|| r.started.elapsed(), Duration::from_millis));
            r.text = text;
        }
    }

    /// The row `d` is about: the one selected, else the last that finished.
    fn chosen(&self) -> Option<usize> {
        self.selected
            .filter(|i| *i < self.rows.len())
            .or_else(|| self.rows.iter().rposition(|r| r.state == State::Done))
    }

    /// Move the selection up (`-1`) or down (`1`).
    fn select(&mut self, by: isize) {
        let last = self.rows.len().saturating_sub(1);
        let from = self.chosen().unwrap_or(last) as isize;
        self.selected = Some((from + by).clamp(0, last as isize) as usize);
        self.show_files = true;
    }

    fn note(&mut self, text: String) {
        self.notes.push_back(text);
        while self.notes.len() > 3 {
            self.notes.pop_front();
        }
    }

    fn apply(&mut self, event: Event) {
        self.run = event.run;
        match event.kind {
            Kind::RunStarted {
                workflow,
                controller,
                ..
            } => {
                self.workflow = workflow;
                self.has_controller = controller;
            }
            Kind::StepStarted {
                step,
                engines,
                pass,
                ..
            } => self.start(step.to_string(), None, engines.join(" → "), pass),
            Kind::GroupStarted { group, members, .. } => {
                for m in members {
                    self.start(m.to_string(), Some(group.clone()), String::new(), None);
                }
            }
            Kind::StepFinished {
                step,
                duration_ms,
                summary,
                diffstat,
                engine,
                commit,
                usage,
                ..
            } => {
                let stat = format!("+{} -{}", diffstat.insertions, diffstat.deletions);
                let text = format!("{}  {summary}  {stat}{}", commit.short(), spent(&usage));
                self.end(&step, State::Done, Some(duration_ms), text);
                if let Some(r) = self.row(&step) {
                    r.engine = engine;
                    r.files = diffstat
                        .paths
                        .into_iter()
                        .map(|p| (p.path, p.insertions, p.deletions))
                        .collect();
                }
            }
            Kind::MemberFinished {
                step,
                duration_ms,
                summary,
                engine,
                commit,
                ..
            } => {
                self.end(
                    &step,
                    State::Done,
                    Some(duration_ms),
                    format!("{}  {summary}", commit.short()),
                );
                if let Some(r) = self.row(&step) {
                    r.engine = engine;
                }
            }
            Kind::StepFailed {
                step,
                reason,
                duration_ms,
                ..
            }
            | Kind::MemberFailed {
                step,
                reason,
                duration_ms,
                ..
            } => self.end(&step, State::Failed, Some(duration_ms), reason),
            Kind::StepSkipped { step, why }
                if self.row(&step).is_some_and(|r| r.state == State::Running) =>
            {
                self.end(&step, State::Skipped, None, why)
            }
            Kind::StepInterrupted { step, duration_ms } => self.end(
                &step,
                State::Interrupted,
                Some(duration_ms),
                "interrupted".into(),
            ),
            Kind::Activity { member, text } => {
                let row = match &member {
                    Some(m) => self.row(m),
                    None => self
                        .rows
                        .iter_mut()
                        .rev()
                        .find(|r| r.state == State::Running),
                };
                if let Some(row) = row.filter(|r| r.state == State::Running) {
                    row.text = text;
                }
            }
            Kind::EngineSkipped { engine, reason, .. } => self.note(format!("{engine}: {reason}")),
            Kind::Workspace {
                member,
                note,
                warning: true,
            } => self.note(match member {
                Some(m) => format!("warning: [{m}] {note}"),
                None => format!("warning: {note}"),
            }),
            Kind::LeftOut { files, .. } => {
                let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                self.note(format!(
                    "secret files left out of the commit (kept in the worktree): {}",
                    paths.join(", ")
                ));
            }
            Kind::Gate {
                command,
                passed,
                ending,
                ..
            } => self.note(if passed {
                format!("gate `{command}` passed")
            } else {
                format!("gate `{command}` failed ({})", ending.unwrap_or_default())
            }),
            Kind::Loop { to, pass, max, .. } => {
                self.note(format!("→ back to {to}, pass {pass}/{max}"))
            }
            Kind::GroupMerged { group, .. } => self.note(format!("group {group} merged")),
            Kind::Waiting { reason, .. } => self.attention = Some(format!("waiting: {reason}")),
            Kind::Paused { reason, worktree } => {
                self.attention = Some(format!(
                    "paused: {reason} — review {worktree}, then `git machine resume {}`",
                    self.run
                ))
            }
            Kind::Conflict {
                step,
                paths,
                worktree,
                ..
            } => {
                self.attention = Some(format!(
                    "conflict merging `{step}` in {} — resolve in {worktree}",
                    paths.join(", ")
                ))
            }
            Kind::Stopped { reason } => self.attention = Some(reason),
            Kind::RunFinished {
                state,
                reason,
                duration_ms,
                ..
            } => {
                // Whatever still shows as running did not finish (Ctrl-C, a stop).
                for r in self.rows.iter_mut().filter(|r| r.state == State::Running) {
                    r.state = State::Interrupted;
                    r.took = Some(r.started.elapsed());
                }
                self.finished = Some(match reason {
                    Some(r) if state != "completed" => format!("{state}: {r}"),
                    _ => format!("{state} in {}", elapsed(Duration::from_millis(duration_ms))),
                })
            }
            _ => {}
        }
    }

    /// The frame, as lines no wider than `width` and, while the run goes on, no taller than
    /// `height` (the oldest finished rows give way), so it can always be redrawn in place.
    fn frame(&self, width: usize, height: usize) -> Vec<String> {
        let paint = |code: &str, t: &str| {
            let style = match code {
                "1" => console::Style::new().bold(),
                "2" => console::Style::new().dim(),
                "31" => console::Style::new().red(),
                "32" => console::Style::new().green(),
                "33" => console::Style::new().yellow(),
                _ => console::Style::new().cyan(),
            };
            style.force_styling(self.color).apply_to(t).to_string()
        };
        let mut lines = Vec::new();
        lines.push(format!(
            "{} {}  {}",
            paint("1", "run"),
            paint("36", &self.run),
            self.workflow
        ));
        if let Some(a) = &self.attention {
            lines.push(paint("33", a));
        }
        let extra = self.notes.len()
            + if self.show_recent {
                self.recent.len().max(1)
            } else {
                0
            };
        let room = height.saturating_sub(lines.len() + extra + 2).max(1);
        let hidden = match self.finished {
            Some(_) => 0,
            None => self.rows.len().saturating_sub(room),
        };
        if hidden > 0 {
            lines.push(paint("2", &format!("… {hidden} earlier steps")));
        }
        let chosen = self.chosen();
        for (i, r) in self.rows.iter().enumerate().skip(hidden) {
            let (symbol, code) = match r.state {
                State::Running => ("▶", "36"),
                State::Done => ("✓", "32"),
                State::Failed => ("✗", "31"),
                State::Skipped => ("↷", "33"),
                State::Interrupted => ("■", "33"),
            };
            let took = elapsed(r.took.unwrap_or_else(|| r.started.elapsed()));
            let name = match (&r.group, r.pass) {
                (Some(_), _) => format!("  {}", r.step),
                (None, Some(p)) => format!("{} #{p}", r.step),
                (None, None) => r.step.clone(),
            };
            let mark = if Some(i) == chosen && self.show_files {
                "›"
            } else {
                " "
            };
            lines.push(format!(
                "{mark}{} {name:<18} {took:>6}  {}  {}",
                paint(code, symbol),
                paint("2", &r.engine),
                r.text
            ));
            if Some(i) == chosen && self.show_files {
                if r.files.is_empty() {
                    lines.push(paint("2", "    (no files changed)"));
                }
                for (path, added, removed) in &r.files {
                    lines.push(format!(
                        "    {path}  {} {}",
                        paint("32", &format!("+{added}")),
                        paint("31", &format!("-{removed}"))
                    ));
                }
            }
        }
        for n in &self.notes {
            lines.push(paint("2", &format!("  {n}")));
        }
        if self.show_recent && self.recent.is_empty() {
            lines.push(paint("2", "    │ (no output from the running step yet)"));
        } else if self.show_recent {
            lines.extend(
                self.recent
                    .iter()
                    .map(|l| paint("2", &format!("    │ {l}"))),
            );
        }
        match (&self.finished, &self.composing) {
            (Some(f), _) => lines.push(paint("1", f)),
            (None, Some(text)) => lines.push(format!(
                "{} {}▏ {}",
                paint("36", "message ›"),
                String::from_utf8_lossy(text),
                paint("2", "(Enter sends it to the running step · Esc drops it)")
            )),
            (None, None) => lines.push(paint(
                "2",
                "p pause · s skip · m message · c controller · l output · ↑↓ d files · q stop",
            )),
        }
        lines
            .into_iter()
            .map(|l| {
                if measure_text_width(&l) > width {
                    truncate_str(&l, width, "…").into_owned()
                } else {
                    l
                }
            })
            .collect()
    }
}

/// Redraw what changed, at most every [`FRAME`], until told to stop; then the final frame.
/// Redraw at most once per [`FRAME`] until the view ends.
async fn draw_task(screen: Arc<Mutex<Screen>>, stop: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if screen.lock().is_ok_and(|s| s.suspended) {
            continue;
        }
        draw(&screen, false);
    }
}

/// Draw the frame if anything changed (a running step's clock always does), or if `force`d.
fn draw(screen: &Mutex<Screen>, force: bool) {
    let term = Term::stderr();
    let mut s = screen.lock().expect("no task panics holding the screen");
    let running = s.rows.iter().any(|r| r.state == State::Running);
    if s.dirty || running || force {
        let (rows, cols) = term.size();
        let lines = s.frame(cols.max(20) as usize, rows.max(5) as usize);
        redraw(&term, &s.drawn, &lines);
        s.drawn = lines;
        s.dirty = false;
    }
}

/// Rewrite only from the first line that changed: the cursor goes up to it, the rest of the
/// screen is cleared and the new lines written.
fn redraw(term: &Term, old: &[String], new: &[String]) {
    let same = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    if same == old.len() && same == new.len() {
        return;
    }
    let _ = term.move_cursor_up(old.len() - same);
    let _ = term.write_str("\r");
    let _ = term.clear_to_end_of_screen();
    for l in &new[same..] {
        let _ = term.write_line(l);
    }
}

/// Keys in the bytes one read gave: arrows (`ESC [ A`, `ESC [ B`) as [`Key::Up`] and [`Key::Down`], a lone
/// ESC as itself; other escape sequences are dropped.
fn keys(bytes: &[u8]) -> Vec<Key> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (0x1b, Some(b'['), Some(b'A')) => out.push(Key::Up),
            (0x1b, Some(b'['), Some(b'B')) => out.push(Key::Down),
            (0x1b, Some(b'[' | b'O'), Some(_)) => {}
            (key, _, _) => {
                out.push(Key::Byte(key));
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    out
}

/// Read keys from the terminal, as the event loop says they come, until the view ends.
async fn key_task(screen: Arc<Mutex<Screen>>, stop: Arc<AtomicBool>, controls: Controls) {
    // SAFETY: fd 0 is open for the whole life of the process; git machine never closes it.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            crate::signal::Stdin,
            tokio::io::Interest::READABLE,
        )
    };
    let Ok(stdin) = registered else {
        return;
    };
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut ready) = stdin.readable().await else {
            return;
        };
        if screen.lock().is_ok_and(|s| s.suspended) {
            // The keys are for whoever has the terminal now.
            ready.clear_ready();
            continue;
        }
        let bytes = crate::signal::read_available();
        ready.clear_ready();
        if bytes.is_empty() || stop.load(Ordering::SeqCst) {
            // The terminal hung up, or the view ended while the key waited.
            return;
        }
        let mut s = screen.lock().expect("no task panics holding the screen");
        for key in keys(&bytes) {
            s.key(key, &controls);
        }
    }
}

impl Screen {
    /// A key while a message is typed: Enter sends it, Esc drops it, Backspace takes back.
    fn compose(&mut self, key: Key, controls: &Controls) {
        let Some(text) = self.composing.as_mut() else {
            return;
        };
        let Key::Byte(key) = key else {
            return;
        };
        match key {
            b'\r' | b'\n' => {
                let text = String::from_utf8_lossy(text).trim().to_string();
                self.composing = None;
                if text.is_empty() {
                    return;
                }
                if let Ok(mut said) = controls.said.lock() {
                    said.push(text.clone());
                }
                controls.mail.store(true, Ordering::SeqCst);
                self.note(format!("said: {text}"));
            }
            0x1b => self.composing = None,
            0x7f | 0x08 => {
                // Back over one character, whatever its length in bytes.
                while let Some(b) = text.pop() {
                    if b & 0xC0 != 0x80 {
                        break;
                    }
                }
            }
            b if b >= 0x20 => text.push(b),
            _ => {}
        }
    }

    /// What a key does: ask the run (pause, skip, stop, a message, the controller) or change
    /// what is shown.
    fn key(&mut self, key: Key, controls: &Controls) {
        if self.composing.is_some() {
            self.compose(key, controls);
            self.dirty = true;
            return;
        }
        match key {
            Key::Byte(b'm') => self.composing = Some(Vec::new()),
            Key::Byte(b'c') if !self.has_controller => {
                self.note("this run's workflow has no [controller] to go back to".into());
            }
            Key::Byte(b'c') if controls.controller.load(Ordering::SeqCst) => {
                controls.cancel.store(true, Ordering::SeqCst);
                self.note(
                    "controller: stopping the step now; its work and session are kept".into(),
                );
            }
            Key::Byte(b'c') => {
                controls.controller.store(true, Ordering::SeqCst);
                controls.pause.store(true, Ordering::SeqCst);
                self.note("controller: opens once this step is committed (c again: now)".into());
            }
            Key::Byte(b'p') => {
                controls.pause.store(true, Ordering::SeqCst);
                self.note("pause asked: the run pauses once this step is committed".into());
            }
            Key::Byte(b's') => {
                controls.skip.store(true, Ordering::SeqCst);
                self.note("skip asked: this step stops and is recorded as skipped".into());
            }
            Key::Byte(b'l') => self.show_recent = !self.show_recent,
            Key::Byte(b'd') => self.show_files = !self.show_files,
            Key::Byte(b'k') | Key::Up => self.select(-1),
            Key::Byte(b'j') | Key::Down => self.select(1),
            Key::Byte(b'q' | 0x1b) => {
                controls.cancel.store(true, Ordering::SeqCst);
                self.note("stopping: the step is stopped, the run stays resumable".into());
            }
            _ => return,
        }
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_arrows_and_a_lone_escape_from_one_read() {
        assert_eq!(keys(b"p"), vec![Key::Byte(b'p')]);
        assert_eq!(
            keys(b"\x1b[A\x1b[Bj"),
            vec![Key::Up, Key::Down, Key::Byte(b'j')]
        );
        assert_eq!(keys(b"\x1b"), vec![Key::Byte(0x1b)]);
        // Other sequences (here a function key) are not keys of the view.
        assert_eq!(keys(b"\x1bOPq"), vec![Key::Byte(b'q')]);
        // Bytes of a character typed into a message stay bytes.
        assert_eq!(keys("é".as_bytes()), vec![Key::Byte(0xc3), Key::Byte(0xa9)]);
    }

    #[test]
    fn agent_activity_reads_as_words() {
        assert_eq!(
            activity(r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Edit","input":{"file_path":"src/api.rs"}}]}}"#).as_deref(),
            Some("edit src/api.rs")
        );
        assert_eq!(
            activity(r#"{"type":"item.started","item":{"type":"command_execution","command":"cargo test"}}"#).as_deref(),
            Some("run cargo test")
        );
        assert_eq!(
            activity(r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Looking at it.\nDone."}]}}"#).as_deref(),
            Some("Done.")
        );
        assert_eq!(
            activity(
                r#"{"type":"tool_use","tool_name":"write_file","parameters":{"file_path":"a.md"}}"#
            )
            .as_deref(),
            Some("write_file a.md"),
            "Gemini"
        );
        assert_eq!(
            activity(r#"{"type":"tool_use","part":{"tool":"edit","state":{"input":{"filePath":"src/x.ts"}}}}"#).as_deref(),
            Some("edit src/x.ts"),
            "OpenCode"
        );
        assert_eq!(activity("plain words").as_deref(), Some("plain words"));
        assert_eq!(activity(r#"  "response": "half of a JSON object","#), None);
        assert_eq!(activity("}"), None);
        assert_eq!(activity("   "), None);
    }

    #[test]
    fn a_frame_fits_the_width() {
        let mut s = Screen {
            run: "261130-000000-aaa".into(),
            ..Screen::default()
        };
        s.start("a-very-long-step-name".into(), None, "claude".into(), None);
        s.rows[0].text = "x".repeat(300);
        for line in s.frame(40, 24) {
            assert!(measure_text_width(&line) <= 40, "{line}");
        }
        for i in 0..50 {
            s.start(format!("step-{i}"), None, "command".into(), None);
            s.end(&format!("step-{i}"), State::Done, Some(5), "ok".into());
        }
        let frame = s.frame(80, 10);
        assert!(frame.len() <= 10, "{}", frame.len());
        assert!(frame.iter().any(|l| l.contains("earlier steps")));
        s.finished = Some("completed".into());
        assert!(
            s.frame(80, 10).len() > 50,
            "the final summary lists every step"
        );
    }
}
