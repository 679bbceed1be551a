//! The person at the terminal, for the runner (see [`crate::runner::person`]): lines of the
//! controller's conversation and its questions read from the terminal in cooked mode, the
//! terminal handed over only when git machine owns it.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::runner::person::{Person, Said};

pub struct Terminal {
    /// Never ask: `--no-input`, or a run in the background.
    no_input: bool,
    /// Set when the run is being stopped (Ctrl-C, `git machine stop`): reading ends.
    stop: Arc<AtomicBool>,
    /// The terminal in line mode from the first question to the end of the conversation: a
    /// line typed ahead (while the agent answers) must find it in line mode, or the terminal
    /// would not see where it ends.
    cooked: Option<crate::tty::Cooked>,
}

impl Terminal {
    pub fn new(no_input: bool, stop: Arc<AtomicBool>) -> Terminal {
        Terminal {
            no_input,
            stop,
            cooked: None,
        }
    }

    fn ask(&mut self, prompt: &str) -> Option<String> {
        if self.cooked.is_none() {
            self.cooked = Some(crate::tty::Cooked::new());
        }
        let mut err = std::io::stderr();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
        crate::tty::read_line(&self.stop)
    }
}

impl Person for Terminal {
    fn present(&self) -> bool {
        use std::io::IsTerminal;
        !self.no_input && crate::tty::can_hand_over() && std::io::stderr().is_terminal()
    }

    fn line(&mut self) -> Said {
        match self.ask("you › ") {
            None => {
                eprintln!();
                Said::Gone
            }
            Some(line) if line.trim().is_empty() => Said::Done,
            Some(line) => Said::Line(line.trim_end().to_string()),
        }
    }

    fn done(&mut self) {
        self.cooked = None;
    }

    fn confirm(&mut self, question: &str, default: bool) -> Option<bool> {
        let choices = if default { "[Y/n]" } else { "[y/N]" };
        loop {
            let answer = self.ask(&format!("{question} {choices} "))?;
            match answer.trim().to_ascii_lowercase().as_str() {
                "" => return Some(default),
                "y" | "yes" => return Some(true),
                "n" | "no" => return Some(false),
                _ => eprintln!("answer y or n"),
            }
        }
    }
}
