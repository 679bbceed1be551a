//! The process environment, read once at start into a value that tests can build.

use std::path::PathBuf;

/// The environment as read once at start: what commands and the runner may consult.
pub struct Env {
    pub cwd: PathBuf,
    pub vars: Vec<(String, String)>,
    pub no_color: bool,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            vars: std::env::vars().collect(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }

    /// What git's own rules read of the environment.
    pub fn git(&self) -> crate::git::GitEnv {
        crate::git::GitEnv::from_vars(&self.vars)
    }

    /// The value of a variable, as it was at start.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
