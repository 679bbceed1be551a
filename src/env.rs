//! The process environment, read once at start into a value that tests can build.

use std::path::PathBuf;

/// The environment as read once at start: what commands and the runner may consult.
pub struct Env {
    pub cwd: PathBuf,
    pub vars: Vec<(String, String)>,
    pub no_color: bool,
    /// `CLICOLOR_FORCE` is set (and not `0`): colour even when not on a terminal.
    pub clicolor_force: bool,
    /// The command line as given (without the program), for `--detach` to start it again.
    pub args: Vec<String>,
    /// This program's own executable, if the system can tell.
    pub exe: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Env {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        crash::arm(&vars);
        Env {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            vars,
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            clicolor_force: std::env::var_os("CLICOLOR_FORCE")
                .is_some_and(|v| !v.is_empty() && v != "0"),
            args: std::env::args().skip(1).collect(),
            exe: std::env::current_exe().ok(),
        }
    }

    /// What git's own rules read of the environment.
    pub fn git(&self) -> crate::git::GitEnv {
        crate::git::GitEnv::from_vars(&self.vars)
    }

    /// Where git machine keeps data of the user's that no repository holds (`trust/`):
    /// `$XDG_DATA_HOME/git-machine`, else `~/.local/share/git-machine`; `None` without either.
    pub fn data_dir(&self) -> Option<PathBuf> {
        let base = self
            .var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                self.var("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".local").join("share"))
            })?;
        Some(base.join("git-machine"))
    }

    /// The value of a variable, as it was at start.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Test-only fault injection: `MACHINE_TEST_CRASH_AT=<point>:<n>` makes the process SIGKILL
/// itself the `n`-th time it passes the named point (see [`crash::point`] and the list of
/// points in docs/reliability.md). Compiled in only with the `test-fakes` feature; without it,
/// [`crash::point`] is an empty function and the variable means nothing.
pub mod crash {
    #[cfg(feature = "test-fakes")]
    mod armed {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::OnceLock;

        static AT: OnceLock<Option<(String, u32)>> = OnceLock::new();
        static PASSED: AtomicU32 = AtomicU32::new(0);

        pub fn arm(vars: &[(String, String)]) {
            let at = vars
                .iter()
                .find(|(k, _)| k == "MACHINE_TEST_CRASH_AT")
                .and_then(|(_, v)| v.rsplit_once(':'))
                .and_then(|(name, n)| Some((name.to_string(), n.parse().ok()?)));
            let _ = AT.set(at);
        }

        pub fn point(name: &str) {
            let Some(Some((at, n))) = AT.get() else {
                return;
            };
            if at == name && PASSED.fetch_add(1, Ordering::SeqCst) + 1 == *n {
                // SAFETY: sends SIGKILL to this process, as `kill -9` from outside would.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }

    /// Read `MACHINE_TEST_CRASH_AT` from the environment as read at start.
    pub fn arm(_vars: &[(String, String)]) {
        #[cfg(feature = "test-fakes")]
        armed::arm(_vars);
    }

    /// A named crash window: with the `test-fakes` feature and `MACHINE_TEST_CRASH_AT`
    /// naming it, the process is killed here; otherwise nothing happens.
    #[inline]
    pub fn point(_name: &str) {
        #[cfg(feature = "test-fakes")]
        armed::point(_name);
    }
}
