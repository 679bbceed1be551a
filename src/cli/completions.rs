//! `git machine completions <shell>`: shell completion scripts, and the hidden
//! `git machine __complete runs|workflows` they call for run ids and workflow names.
//!
//! clap_complete writes the static part (subcommands, flags) from the clap definitions; this
//! module adds what clap cannot know: the runs and workflows of the repository at hand, offered
//! for the first positional argument of the subcommands whose first positional is a run
//! (`RUN`) or a workflow (`WORKFLOW`) — found in the definitions too, so a new subcommand is
//! covered without editing this file. For bash it also defines `_git_machine`, the function
//! git's own bash completion calls for `git machine …`.

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::{generate, Shell as Generator};

use super::error::CliResult;
use super::{Cli, Ctx};
use crate::git::Repo;
use crate::store;
use crate::workflow;

/// Print a completion script for bash, zsh or fish
#[derive(Args, Debug)]
#[command(after_long_help = "\
Install (see README \"Help and completions\"):
  bash: git machine completions bash > ~/.local/share/bash-completion/completions/git-machine
  zsh:  git machine completions zsh > ~/.zfunc/_git-machine   (with fpath+=~/.zfunc)
  fish: git machine completions fish > ~/.config/fish/completions/git-machine.fish")]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Print run ids or workflow names, one a line, for the completion scripts
#[derive(Args, Debug)]
pub struct CompleteArgs {
    /// What to list
    #[arg(value_enum)]
    pub what: Completable,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completable {
    Runs,
    Workflows,
}

/// The name the scripts complete: the program git runs for `git machine`.
const BIN: &str = "git-machine";

pub fn run(ctx: &mut Ctx, args: &CompletionsArgs) -> CliResult {
    ctx.ui.out(script(args.shell).trim_end());
    Ok(())
}

/// Never fails: a completion that errors would print into the person's command line, so
/// outside a repository (or on a broken one) it lists nothing.
pub fn complete(ctx: &mut Ctx, args: &CompleteArgs) -> CliResult {
    let repo = Repo::discover(&ctx.env.cwd, &ctx.env.git()).ok();
    let names: Vec<String> = match args.what {
        Completable::Runs => repo
            .and_then(|r| store::list_runs(&r).ok())
            .map(|runs| {
                runs.into_iter()
                    .map(|(id, _)| id.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        Completable::Workflows => workflow::list(repo.as_ref().and_then(|r| r.workdir()))
            .into_iter()
            .map(|(name, _, _)| name)
            .collect(),
    };
    for name in names {
        ctx.ui.out(&name);
    }
    Ok(())
}

/// The whole script for `shell`: clap_complete's, then the dynamic part.
pub fn script(shell: Shell) -> String {
    let mut cmd = visible(Cli::command().name(BIN));
    let generator = match shell {
        Shell::Bash => Generator::Bash,
        Shell::Zsh => Generator::Zsh,
        Shell::Fish => Generator::Fish,
    };
    let mut out = Vec::new();
    generate(generator, &mut cmd, BIN, &mut out);
    let generated = String::from_utf8(out).expect("completion scripts are UTF-8");
    let subs = Positionals::of(&Cli::command());
    match shell {
        Shell::Bash => format!("{}\n{}", bash_fixed(&generated), bash_extra(&subs)),
        Shell::Zsh => zsh_with_dynamic(&generated, &subs),
        Shell::Fish => format!("{generated}\n{}", fish_extra(&subs)),
    }
}

/// `cmd` without its hidden subcommands, which clap_complete would offer (`__complete` is
/// for the scripts only).
fn visible(cmd: clap::Command) -> clap::Command {
    let mut bare = clap::Command::new(BIN)
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true)
        .args(cmd.get_arguments().cloned());
    if let Some(about) = cmd.get_about() {
        bare = bare.about(about.clone());
    }
    bare.subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// Which visible subcommands take a run, and which a workflow, as their first positional.
struct Positionals {
    runs: Vec<String>,
    workflows: Vec<String>,
}

impl Positionals {
    fn of(cmd: &clap::Command) -> Positionals {
        let mut p = Positionals {
            runs: Vec::new(),
            workflows: Vec::new(),
        };
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let Some(first) = sub.get_positionals().next() else {
                continue;
            };
            let name = first
                .get_value_names()
                .and_then(|v| v.first())
                .map(|v| v.to_string())
                .unwrap_or_else(|| first.get_id().as_str().to_uppercase());
            match name.as_str() {
                "RUN" => p.runs.push(sub.get_name().to_string()),
                "WORKFLOW" => p.workflows.push(sub.get_name().to_string()),
                _ => {}
            }
        }
        p
    }
}

/// clap_complete 4.6 names a subcommand's state `git__machine__subcmd__run` where it is set
/// but `git__subcmd__machine__subcmd__run` where it is matched (it escapes the `-` of the
/// program's name in one place only), so no subcommand's flags would complete.
fn bash_fixed(generated: &str) -> String {
    generated.replace("git__subcmd__machine__", "git__machine__")
}

/// For bash: a wrapper that adds run ids and workflow names to clap's completion, bound to
/// `git-machine`, and `_git_machine` for git's completion (`__git_main` calls it with
/// `words`, `cword` and `cur` set and `__git_cmd_idx` at `machine`; git's completion is
/// registered with `-o nospace`, so each word gets its trailing space here).
fn bash_extra(p: &Positionals) -> String {
    format!(
        r#"# Run ids and workflow names for the first positional argument.
__git_machine_dynamic() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" kind
    [[ $COMP_CWORD -eq 2 && $cur != -* ]] || return 0
    case "${{COMP_WORDS[1]}}" in
        {runs}) kind=runs ;;
        {workflows}) kind=workflows ;;
        *) return 0 ;;
    esac
    COMPREPLY+=( $(compgen -W "$(git-machine __complete "$kind" 2>/dev/null)" -- "$cur") )
}}

__git_machine_complete() {{
    _git__machine "$@"
    __git_machine_dynamic
}}

# `git machine …` under git's own bash completion.
_git_machine() {{
    local idx="${{__git_cmd_idx:-1}}"
    local COMP_WORDS=( git-machine "${{words[@]:idx+1}}" )
    local COMP_CWORD=$(( cword - idx ))
    __git_machine_complete git-machine "$cur" "${{COMP_WORDS[COMP_CWORD-1]}}"
    COMPREPLY=( "${{COMPREPLY[@]/%/ }}" )
}}

complete -F __git_machine_complete -o bashdefault -o default git-machine
"#,
        runs = p.runs.join("|"),
        workflows = p.workflows.join("|"),
    )
}

/// For zsh: clap's `_arguments` spec leaves a positional's action empty or `_default`; the
/// first positional of the run and workflow subcommands gets a function calling
/// `__complete` instead.
fn zsh_with_dynamic(generated: &str, p: &Positionals) -> String {
    let mut out = String::new();
    let mut sub = String::new();
    for line in generated.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix('(').and_then(|l| l.strip_suffix(')')) {
            sub = name.to_string();
        }
        // Autoloaded, the file runs as `_git-machine` and calls it at this line: the helpers
        // must be defined before.
        if line.starts_with("if [ \"$funcstack[1]\" = ") {
            out.push_str(ZSH_HELPERS);
        }
        out.push_str(&zsh_line(line, &sub, p));
        out.push('\n');
    }
    out
}

const ZSH_HELPERS: &str = r#"_git_machine_runs() {
    local -a runs
    runs=(${(f)"$(git-machine __complete runs 2>/dev/null)"})
    _describe -t runs 'run' runs
}
_git_machine_workflows() {
    local -a wfs
    wfs=(${(f)"$(git-machine __complete workflows 2>/dev/null)"})
    _describe -t workflows 'workflow' wfs
}

"#;

/// One line of clap's zsh script, with the action of a run or workflow positional replaced.
fn zsh_line(line: &str, sub: &str, p: &Positionals) -> String {
    let function = if p.runs.iter().any(|s| s == sub) {
        "_git_machine_runs"
    } else if p.workflows.iter().any(|s| s == sub) {
        "_git_machine_workflows"
    } else {
        return line.to_string();
    };
    // Positionals are `':name…`, `'::name…` (optional) or `'*::name…` (repeated).
    let trimmed = line.trim_start();
    if !(trimmed.starts_with("':") || trimmed.starts_with("'*:")) {
        return line.to_string();
    }
    for empty in [":_default' \\", ":' \\", ":_default'", ":'"] {
        if let Some(head) = line.strip_suffix(empty) {
            let tail = &empty[empty.find('\'').expect("each ends in a quote")..];
            return format!("{head}:{function}{tail}");
        }
    }
    line.to_string()
}

/// For fish: run ids and workflow names after the subcommands that take them.
fn fish_extra(p: &Positionals) -> String {
    let mut out = String::new();
    for (subs, what) in [(&p.runs, "runs"), (&p.workflows, "workflows")] {
        out.push_str(&format!(
            "complete -c {BIN} -n \"__fish_seen_subcommand_from {}\" -f -a \"({BIN} __complete {what} 2>/dev/null)\"\n",
            subs.join(" ")
        ));
    }
    out
}
