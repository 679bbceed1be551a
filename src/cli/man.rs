//! The man pages, generated from the clap definitions, and `git machine install-man`.
//!
//! git turns `git machine --help` into `git help machine`, which runs `man git-machine`: the
//! pages must be installed where `man` looks. [`pages`] is the one generator: `install-man`
//! writes its output, and a test compares it with the pages committed under `man/` (so a
//! packager can install those without building). Pages are named as git names its own:
//! `git-machine.1`, `git-machine-<sub>.1`. They carry no date or version, so they only change
//! when the command line does.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use super::error::{
    CliError, CliResult, EXIT_BUG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_USAGE,
};
use super::{Cli, Ctx};

/// Install the man pages, so that `git machine --help` and `git help machine` show them
#[derive(Args, Debug)]
pub struct InstallManArgs {
    /// Where to install: pages go into <DIR>/man1/ [default: ~/.local/share/man]
    pub dir: Option<PathBuf>,
}

/// What the top-level page says under DESCRIPTION, beyond the one-line summary.
const DESCRIPTION: &str = "\
git machine runs multi-step workflows of AI coding agents (Claude Code, Codex, Gemini CLI, \
OpenCode, Cursor, Aider) or plain commands, each run on its own branch machine/<run-id>: one \
commit per step, so a step is reviewed as a diff, a crashed run resumes from its last step \
commit, and a run can be rewound and run forward again.

Workflows are TOML files under .codemachine/workflows/ (git machine workflows lists them with \
the built-ins). Each subcommand has its own page: man git-machine-<subcommand>, or \
git machine help <subcommand> without installed pages.";

/// Each exit code with its meaning, in the order the EXIT STATUS section lists them.
const EXIT_CODES: [(i32, &str); 6] = [
    (0, "Done: the command or the run completed."),
    (
        EXIT_FAILED,
        "A step failed, or the run is paused for review, waits at a terminal, or stopped on a merge conflict.",
    ),
    (
        EXIT_USAGE,
        "Bad usage or an invalid workflow: nothing was created.",
    ),
    (
        EXIT_REFUSED,
        "Refused: the run is locked by another process, or a ref moved under us.",
    ),
    (
        EXIT_INTERRUPTED,
        "Interrupted (Ctrl-C, SIGTERM, SIGHUP): the run resumes from its last step commit.",
    ),
    (EXIT_BUG, "A bug in git machine: please report it."),
];

/// Every page as (file name, roff text): the top-level page first, then one per visible
/// subcommand.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command()
        .name("git-machine")
        .bin_name("git machine")
        .long_about(DESCRIPTION);
    cmd.build();
    let mut out = vec![page(&cmd)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(page(sub));
    }
    out
}

/// One page: clap_mangen's sections, without the version or date (it would make every release
/// change every page), then EXIT STATUS and SEE ALSO.
fn page(cmd: &clap::Command) -> (String, Vec<u8>) {
    // No date: a blank one (roff drops an empty argument, shifting the others).
    let man = Man::new(cmd.clone())
        .date(" ")
        .source("git machine")
        .manual("Git Machine Manual");
    let mut text = Vec::new();
    let write = |r: std::io::Result<()>| r.expect("writing to a Vec cannot fail");
    write(man.render_title(&mut text));
    write(man.render_name_section(&mut text));
    write(man.render_synopsis_section(&mut text));
    write(man.render_description_section(&mut text));
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        write(man.render_options_section(&mut text));
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        write(man.render_subcommands_section(&mut text));
    }
    write(tail(cmd).to_writer(&mut text));
    (man.get_filename(), text)
}

/// The EXIT STATUS and SEE ALSO sections.
fn tail(cmd: &clap::Command) -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let see = if name == "git-machine" {
        "git(1), git-worktree(1)"
    } else {
        "git-machine(1)"
    };
    roff.text([roman(see)]);
    roff
}

/// Write every page into `<dir>/man1/`, returning that folder.
pub fn write_pages(dir: &Path) -> std::io::Result<PathBuf> {
    let man1 = dir.join("man1");
    std::fs::create_dir_all(&man1)?;
    for (name, text) in pages() {
        std::fs::write(man1.join(name), text)?;
    }
    Ok(man1)
}

pub fn run(ctx: &mut Ctx, args: &InstallManArgs) -> CliResult {
    let dir = match &args.dir {
        Some(d) => ctx.env.cwd.join(d),
        None => default_dir(ctx)?,
    };
    let man1 = write_pages(&dir).map_err(|e| {
        CliError::failed(format!("cannot write the man pages into {}", dir.display()))
            .caused_by(e.to_string())
            .with_hint("give a folder you can write to: `git machine install-man <dir>`")
    })?;
    ctx.ui.out(&format!(
        "installed {} man pages in {}",
        pages().len(),
        man1.display()
    ));
    if !on_manpath(ctx, &dir) {
        ctx.ui.note(&manpath_hint(&dir));
    }
    Ok(())
}

/// `~/.local/share/man`, which man-db searches by default for a user whose PATH has
/// `~/.local/bin`.
fn default_dir(ctx: &Ctx) -> CliResult<PathBuf> {
    match ctx.env.var("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(home).join(".local/share/man")),
        None => Err(
            CliError::usage("HOME is not set, so there is no default folder")
                .with_hint("give the folder: `git machine install-man <dir>`"),
        ),
    }
}

/// Whether `MANPATH` names `dir` (when MANPATH is unset, man-db derives the path from PATH,
/// which this cannot tell for sure, so the hint is shown then too).
fn on_manpath(ctx: &Ctx, dir: &Path) -> bool {
    ctx.env
        .var("MANPATH")
        .is_some_and(|m| m.split(':').any(|p| Path::new(p) == dir))
}

fn manpath_hint(dir: &Path) -> String {
    format!(
        "hint: if `git help machine` does not find the page, add the folder to MANPATH (the \
         trailing colon keeps the system pages):\n  export MANPATH=\"{}:$MANPATH\"",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_named_as_git_names_its_own() {
        let names: Vec<String> = pages().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "git-machine.1");
        assert!(
            names.contains(&"git-machine-run.1".to_string()),
            "{names:?}"
        );
        assert!(names.iter().all(|n| !n.contains("__complete")), "{names:?}");
    }

    #[test]
    fn every_page_lists_the_exit_codes() {
        for (name, text) in pages() {
            let text = String::from_utf8(text).expect("roff is text");
            assert!(text.contains(".SH \"EXIT STATUS\""), "{name}");
            assert!(text.contains("130"), "{name}");
        }
    }
}
