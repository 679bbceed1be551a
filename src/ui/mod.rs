//! Output: where messages go and how they look, decided once.
//!
//! Commands get a [`Ui`] and write through it; nothing deeper prints. Colour is chosen from
//! `--color`, then `color.machine`, `color.ui`, `NO_COLOR`, then whether stdout is a terminal.
//! Result lines may go through a pager ([`Ui::start_pager`]). A reader that goes away (a
//! closed pipe: `git machine log | head -1`) is not an error: further output is dropped and the
//! command ends as it would have, like git's.

pub mod eventlog;
pub mod live;
pub mod pager;
pub mod person;
pub mod progress;

use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

pub struct Ui {
    pub color: bool,
    out: Box<dyn Write>,
    err: Box<dyn Write>,
    /// The reader of stdout went away: nothing more is written there.
    closed: bool,
    /// The pager `out` writes to, waited for by [`Ui::finish`].
    pager: Option<std::process::Child>,
}

/// Decide colour from the flag, git config values (already looked up), `NO_COLOR` and the tty.
/// `--color` first, then `color.machine`, `color.ui`, then `NO_COLOR` (never) and
/// `CLICOLOR_FORCE` (always), then whether stdout is a terminal.
pub fn use_color(
    flag: ColorChoice,
    machine: Option<&str>,
    ui: Option<&str>,
    no_color: bool,
    force: bool,
) -> bool {
    match flag {
        ColorChoice::Always => return true,
        ColorChoice::Never => return false,
        ColorChoice::Auto => {}
    }
    for value in [machine, ui].into_iter().flatten() {
        match value.to_ascii_lowercase().as_str() {
            "always" => return true,
            "never" | "false" | "off" | "no" | "0" => return false,
            "true" | "auto" | "on" | "yes" | "1" => break,
            _ => {}
        }
    }
    !no_color && (force || std::io::stdout().is_terminal())
}

impl Ui {
    pub fn new(color: bool) -> Ui {
        Ui {
            color,
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
            closed: false,
            pager: None,
        }
    }

    /// A line of the command's result, on stdout.
    pub fn out(&mut self, text: &str) {
        self.out_bytes(format!("{text}\n").as_bytes());
    }

    /// Bytes of the command's result, on stdout, as they are (another program's output).
    /// Returns false once the reader has gone away.
    pub fn out_bytes(&mut self, bytes: &[u8]) -> bool {
        if self.closed {
            return false;
        }
        let written = self.out.write_all(bytes).and_then(|()| self.out.flush());
        if written.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            self.closed = true;
        }
        !self.closed
    }

    /// Send stdout through the pager `command` (a shell command, as git runs `core.pager`),
    /// with `env` set for it. A pager that cannot start leaves stdout as it was.
    pub fn start_pager(&mut self, command: &str, env: &[(&str, &str)]) {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .spawn();
        if let Ok(mut child) = child {
            if let Some(stdin) = child.stdin.take() {
                self.out = Box::new(stdin);
                self.pager = Some(child);
            }
        }
    }

    /// End the output: close the pager's input and wait until the person quits it.
    pub fn finish(&mut self) {
        if let Some(mut pager) = self.pager.take() {
            self.out = Box::new(std::io::sink());
            let _ = pager.wait();
        }
    }

    /// A progress or diagnostic line, on stderr.
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.err, "{text}");
        let _ = self.err.flush();
    }

    fn paint(&self, style: console::Style, text: &str) -> String {
        style.force_styling(self.color).apply_to(text).to_string()
    }
    pub fn bold(&self, t: &str) -> String {
        self.paint(console::Style::new().bold(), t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint(console::Style::new().dim(), t)
    }
    pub fn green(&self, t: &str) -> String {
        self.paint(console::Style::new().green(), t)
    }
    pub fn red(&self, t: &str) -> String {
        self.paint(console::Style::new().red(), t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.paint(console::Style::new().yellow(), t)
    }
    pub fn cyan(&self, t: &str) -> String {
        self.paint(console::Style::new().cyan(), t)
    }
}

/// A unified diff of `old` → `new` (headers `a`, `b`), coloured, as lines to show.
pub fn diff_lines(ui: &Ui, old: &str, new: &str, a: &str, b: &str) -> Vec<String> {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(a, b)
        .to_string()
        .lines()
        .map(|line| match line.chars().next() {
            Some('+') if !line.starts_with("+++") => ui.green(line),
            Some('-') if !line.starts_with("---") => ui.red(line),
            _ => line.to_string(),
        })
        .collect()
}

/// `1.2s`, `3m04s`, `1h02m`.
pub fn elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_flag_then_config_then_no_color() {
        assert!(use_color(
            ColorChoice::Always,
            Some("never"),
            None,
            true,
            false
        ));
        assert!(!use_color(
            ColorChoice::Never,
            Some("always"),
            None,
            false,
            true
        ));
        assert!(use_color(
            ColorChoice::Auto,
            Some("always"),
            Some("never"),
            true,
            false
        ));
        assert!(!use_color(
            ColorChoice::Auto,
            None,
            Some("never"),
            false,
            true
        ));
        assert!(use_color(
            ColorChoice::Auto,
            None,
            Some("always"),
            true,
            false
        ));
        assert!(
            use_color(ColorChoice::Auto, None, None, false, true),
            "CLICOLOR_FORCE"
        );
        assert!(
            !use_color(ColorChoice::Auto, None, None, true, true),
            "NO_COLOR wins"
        );
    }

    #[test]
    fn elapsed_is_short() {
        assert_eq!(elapsed(Duration::from_millis(1234)), "1.2s");
        assert_eq!(elapsed(Duration::from_secs(184)), "3m04s");
    }
}
