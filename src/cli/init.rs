//! `git machine init`: scaffold `.codemachine/` — a starter workflow that uses an agent CLI
//! installed on this machine, its prompt files, and a short README — never overwriting a file
//! that is there already.

use clap::Args;

use super::error::{CliError, CliResult};
use super::Ctx;
use crate::engine;

/// Set up .codemachine/ with a starter workflow for an agent installed here
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The agent engine of the starter (default: the first installed one, see `git machine engines`)
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
}

const README: &str = "# .codemachine\n\n\
git machine keeps its workflows here, versioned with the code.\n\n\
- `workflows/<name>.toml`: a workflow; `git machine run <name>` starts it on its own branch,\n  \
one commit per step. `git machine validate <name>` checks it.\n\
- `workflows/prompts/`: prompt files the workflows name with `prompt_file`.\n\
- `runs/<run>/`: each run's records, on the run's branch only (never on yours).\n\n\
Try: `git machine run starter --var task=\"add a --version flag\"`.\n";

const PLAN: &str = "Plan this task for the code in this repository:\n\n{task}\n\n\
Write the plan to PLAN.md: the files to change and how, and how to check the result. \
Do not change any other file yet.\n";

const IMPLEMENT: &str = "Carry out the plan in PLAN.md for this task:\n\n{task}\n\n\
Keep the change small and focused; update the tests that cover it.\n";

/// The starter workflow for `engine`.
fn starter(engine: &str) -> String {
    format!(
        r#"version = 1
name = "starter"
description = "Plan a task, carry it out, check it"

[vars.task]
help = "what to do, in a sentence"

[vars.check]
help = "the command that checks the result"
default = "true"

[defaults]
engine = "{engine}"
permissions = "edit"
timeout = "30m"

[[steps]]
id = "plan"
prompt_file = "prompts/plan.md"
outputs = ["PLAN.md"]

[[steps]]
id = "implement"
prompt_file = "prompts/implement.md"
context = [{{ from = "plan" }}]

[[steps]]
id = "check"
engine = "command"
# The command arrives as a positional argument, never pasted into the script.
run = ["sh", "-c", "eval \"$1\"", "check", "{{check}}"]
"#
    )
}

pub fn run(ctx: &mut Ctx, args: &InitArgs) -> CliResult {
    let repo = ctx.repo()?;
    let root = repo
        .workdir()
        .ok_or_else(|| {
            CliError::usage("`init` needs a checkout; this repository is bare")
                .with_hint("run it in a clone with a working tree")
        })?
        .join(".codemachine");
    if let Some(e) = &args.engine {
        super::run::check_engine("--engine", e)?;
    }
    const STARTER: &str = "workflows/starter.toml";
    let missing: Vec<&str> = [
        "README.md",
        STARTER,
        "workflows/prompts/plan.md",
        "workflows/prompts/implement.md",
    ]
    .into_iter()
    .filter(|rel| !root.join(rel).exists())
    .collect();
    if missing.is_empty() {
        ctx.ui.out("nothing to do: .codemachine/ is set up already");
        return Ok(());
    }
    // Checked before anything is written: a mistake creates nothing.
    let engine = match missing.contains(&STARTER) {
        true => Some(pick_engine(ctx, args.engine.as_deref())?),
        false => None,
    };
    for rel in [
        "README.md",
        STARTER,
        "workflows/prompts/plan.md",
        "workflows/prompts/implement.md",
    ] {
        if !missing.contains(&rel) {
            ctx.ui
                .note(&format!("kept .codemachine/{rel}: it is there already"));
            continue;
        }
        let text = match rel {
            "README.md" => README.to_string(),
            STARTER => starter(engine.as_deref().unwrap_or("claude")),
            "workflows/prompts/plan.md" => PLAN.to_string(),
            _ => IMPLEMENT.to_string(),
        };
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &text)?;
        if rel == STARTER {
            // Written here by the user's own command: it runs without the trust question.
            super::trust::trust_written(ctx, &repo, &path, &text)?;
        }
        ctx.ui.out(&format!("wrote .codemachine/{rel}"));
    }
    if let Some(engine) = engine {
        ctx.ui.out(&format!(
            "the starter workflow uses {engine}; try `git machine run starter --var task=\"…\"`"
        ));
    }
    Ok(())
}

/// The engine asked for (which must be an agent engine), else the first agent CLI installed
/// here; with none installed, an error saying how to get one.
fn pick_engine(ctx: &Ctx, asked: Option<&str>) -> CliResult<String> {
    if let Some(e) = asked {
        super::run::check_engine("--engine", e)?;
        return Ok(e.to_string());
    }
    let path = ctx.env.var("PATH").map(std::ffi::OsString::from);
    engine::AGENTS
        .iter()
        .find(|cli| {
            engine::by_name(cli.engine, &ctx.env.vars)
                .is_some_and(|e| e.check(path.as_deref()).is_ok())
        })
        .map(|cli| cli.engine.to_string())
        .ok_or_else(|| {
            CliError::usage("no agent CLI is installed here for the starter workflow")
                .with_hint("`git machine engines` lists them and how to install each; or give one with --engine")
        })
}
