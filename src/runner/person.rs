//! The person at the terminal, as the runner needs them: to hand the terminal to an interactive
//! step, and to have the controller's conversation with. `ui/` implements it; a run without a
//! terminal (CI, `--detach`, `--no-input`) has no person, and the runner does what the
//! workflow says for that case.

/// One of the person's answers in the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A line of text (never empty).
    Line(String),
    /// An empty line: they are done talking.
    Done,
    /// Input ended (Ctrl-D) or the run is being stopped.
    Gone,
}

pub trait Person {
    /// Whether a terminal can be handed over and asked right now.
    fn present(&self) -> bool;
    /// The person's next line in the conversation.
    fn line(&mut self) -> Said;
    /// A yes/no question; Enter gives `default`. None when input ended.
    fn confirm(&mut self, question: &str, default: bool) -> Option<bool>;
    /// The conversation is over: the terminal goes back to how the view wants it.
    fn done(&mut self) {}
}
