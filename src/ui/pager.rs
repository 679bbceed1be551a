//! Which pager a command's output goes through, chosen like git chooses its own.
//!
//! No pager unless stdout is a terminal, `--no-pager` was not given and no pager already reads
//! our output (`GIT_PAGER_IN_USE`, set by git when `git -p machine …` or `pager.machine` made
//! git start one). `pager.machine` may turn paging off (`false`) or name the pager. Otherwise
//! `GIT_PAGER`, then `core.pager`, then `PAGER`, then `less`; `cat` or an empty value means no
//! pager (so `git --no-pager machine …`, which sets `GIT_PAGER=cat`, pages nothing).

/// What the choice is made from, each already looked up by the caller.
#[derive(Debug, Default, Clone)]
pub struct PagerInputs<'a> {
    /// `--no-pager` was given.
    pub no_pager: bool,
    pub stdout_terminal: bool,
    /// `GIT_PAGER_IN_USE` is set to a true value.
    pub pager_in_use: bool,
    /// `git config pager.machine`.
    pub pager_machine: Option<&'a str>,
    /// `GIT_PAGER`.
    pub git_pager: Option<&'a str>,
    /// `git config core.pager`.
    pub core_pager: Option<&'a str>,
    /// `PAGER`.
    pub pager: Option<&'a str>,
}

/// The pager when nothing names one.
pub const DEFAULT_PAGER: &str = "less";

/// Variables a pager gets when the environment does not set them already, as git sets them:
/// `less` quits when the output fits a screen, keeps colours and does not clear the screen.
pub const PAGER_ENV: &[(&str, &str)] = &[("LESS", "FRX"), ("LV", "-c")];

/// The shell command of the pager to use, or `None` for none.
pub fn pager_command(given: &PagerInputs<'_>) -> Option<String> {
    if given.no_pager || !given.stdout_terminal || given.pager_in_use {
        return None;
    }
    let configured = match given.pager_machine.map(bool_value) {
        Some(Some(false)) => return None,
        Some(None) => given.pager_machine,
        _ => None,
    };
    let command = configured
        .or(given.git_pager)
        .or(given.core_pager)
        .or(given.pager)
        .unwrap_or(DEFAULT_PAGER)
        .trim();
    (!command.is_empty() && command != "cat").then(|| command.to_string())
}

/// A git boolean (`true`/`yes`/`on`/`1`, `false`/`no`/`off`/`0`/empty), or `None` when the
/// value is not one.
pub fn bool_value(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal<'a>() -> PagerInputs<'a> {
        PagerInputs {
            stdout_terminal: true,
            ..Default::default()
        }
    }

    #[test]
    fn chosen_like_git() {
        assert_eq!(pager_command(&terminal()).as_deref(), Some("less"));
        let all = PagerInputs {
            git_pager: Some("gp"),
            core_pager: Some("cp"),
            pager: Some("p"),
            ..terminal()
        };
        assert_eq!(pager_command(&all).as_deref(), Some("gp"));
        let core = PagerInputs {
            git_pager: None,
            ..all.clone()
        };
        assert_eq!(pager_command(&core).as_deref(), Some("cp"));
        let named = PagerInputs {
            pager_machine: Some("most"),
            ..all.clone()
        };
        assert_eq!(pager_command(&named).as_deref(), Some("most"));
        let on = PagerInputs {
            pager_machine: Some("true"),
            ..all.clone()
        };
        assert_eq!(pager_command(&on).as_deref(), Some("gp"));
    }

    #[test]
    fn no_pager_when_asked_or_not_on_a_terminal() {
        for off in [
            PagerInputs {
                no_pager: true,
                ..terminal()
            },
            PagerInputs::default(),
            PagerInputs {
                pager_in_use: true,
                ..terminal()
            },
            PagerInputs {
                pager_machine: Some("false"),
                ..terminal()
            },
            PagerInputs {
                git_pager: Some("cat"),
                ..terminal()
            },
            PagerInputs {
                git_pager: Some(""),
                ..terminal()
            },
        ] {
            assert_eq!(pager_command(&off), None, "{off:?}");
        }
    }
}
